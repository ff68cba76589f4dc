/*-------------------------------------------------------------------------
 *
 * admission.c
 *	  Admission of claims in shared memory, and the claim cursor.
 *
 * Admission: may this claim lease n more jobs?  count[ACTIVE] is the number
 * of committed active jobs, reserved what transactions in progress hold for
 * the jobs they lease.  A claim reserves under the spinlock only while
 * count[ACTIVE] + reserved <= concurrency afterwards, so the number of
 * active jobs never exceeds the limit, whichever way the transactions end.
 *
 * A transaction that ends leases (complete, fail, release, cancel) and then
 * claims in the same queue may reuse the slots it frees: what it reserves
 * is the net number of jobs it makes active, max(0, leased - ended), not the
 * number it leases.  If it commits, both its leases and its ends take effect
 * at once; if it aborts, neither does; so the bound above holds for every
 * outcome.  Its reservation never shrinks before the transaction ends (only
 * what a claim did not use is given back at once), because a subtransaction
 * that ended a lease may still abort and give that lease back.  Aborting a
 * subtransaction gives back what its claims reserved: nothing done after it
 * started is left to need it.
 *
 * Claim cursor.  Each entry also holds the position in claim order before
 * which the queue has no claimable job, so that claims start their index
 * scan there instead of stepping over the dead entries that earlier claims
 * left at the head of the index.  doc/claim-cursor.md says how transactions
 * that make jobs claimable lower it, and why that keeps it right.
 *
 * src/admission.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/timestamp.h"

#include "shared.h"
#include "xact.h"

/* the largest position */
static const IjPos ij_pos_end = {PG_INT64_MAX, PG_INT64_MAX};

/* once a second per queue, one claim scans from the head (defence in depth) */
#define IJ_HEAD_SCAN_INTERVAL_MS 1000

/* the outcome of asking for admission when shared memory does not decide */
static void
ij_admission_unshared(IjAdmission *adm)
{
	adm->shared = false;
	adm->granted = 0;
	adm->raised = 0;
	adm->promote = true;
	adm->job_wake_seq = 0;
	adm->self_notify = false;
	adm->start = ij_pos_start;
	adm->cursor_version = 0;
}

/*
 * Grant a claim up to want slots of the queue of entry e, by the settings
 * paused and concurrency, and reserve what it needs for them (adm->raised);
 * a claim granted none becomes a slot waiter.  adm->own_delta and
 * adm->own_reserved must be set.  The caller holds e's mutex.
 */
static inline void
ij_reserve_locked(IjQueueState *e, bool paused, int32 concurrency, int want,
				  IjAdmission *adm)
{
	int64		room;
	int64		need;

	/*
	 * room: the slots left when every other transaction in progress gets
	 * what it reserved; this transaction may make up to that many jobs
	 * active, net of the leases it has ended (own_delta < 0) or leased
	 * (own_delta > 0) so far.
	 */
	room = concurrency - e->count[IJ_COUNT_ACTIVE] -
		(e->reserved - adm->own_reserved);
	if (paused || room < 0)
		adm->granted = 0;
	else
		adm->granted = (int) Max(0, Min(want, room - adm->own_delta));
	need = Max(0, adm->own_delta + adm->granted);
	adm->raised = (int) Max(0, need - adm->own_reserved);
	e->reserved += adm->raised;
	if (adm->granted == 0)
	{
		if (e->slot_waiters < PG_INT32_MAX)
			e->slot_waiters++;
		adm->self_notify = e->slot_wakers > 0;
	}
}

/*
 * Tell a claim that was granted adm->granted slots where its scan starts
 * (the cursor, or the head once a second), and what it must know to wake
 * itself and promote delayed jobs.  The caller holds e's mutex.
 */
static inline void
ij_read_cursor_locked(IjQueueState *e, TimestampTz now, IjAdmission *adm)
{
	adm->promote = e->count[IJ_COUNT_DELAYED] > 0;
	adm->job_wake_seq = e->job_wake_seq;
	adm->start = e->cursor;
	adm->cursor_version = e->cursor_version;
	if (adm->granted > 0 &&
		TimestampDifferenceExceeds(e->last_head_scan, now,
								   IJ_HEAD_SCAN_INTERVAL_MS))
	{
		adm->start = ij_pos_start;
		e->last_head_scan = now;
	}
}

/*
 * Ask for up to want slots of a queue.  Fills adm; adm->granted is 0 when
 * the queue is paused or full, and the caller is then counted as waiting
 * for a slot.  adm->shared is false when there is no shared state for the
 * queue (no preload, a full table, or a queue whose late loader could not
 * run): the caller must then do admission itself, on the queue's row.
 */
void
ij_admit(const IjQueue *queue, int want, IjAdmission *adm)
{
	IjPending  *p;
	IjQueueState *e;
	TimestampTz now;
	bool		own_settings = false;
	bool		paused;
	int32		concurrency;
	const IjQueue *own;

	ij_admission_unshared(adm);
	if (!ij_shmem_active())
		return;
	now = GetCurrentTimestamp();

	p = ij_pending(queue->queue_id);
	ij_own_share(p->relid, queue->queue_id, &adm->own_delta,
				 &adm->own_reserved);

	/*
	 * Admit by the settings committed last (read under the spinlock, so that
	 * none can change between the check and the reservation), or by this
	 * transaction's own changes to them.
	 */
	paused = queue->paused;
	concurrency = queue->concurrency;
	own = ij_own_settings(p->relid, queue->queue_id);
	if (own != NULL)
	{
		own_settings = true;
		paused = own->paused;
		concurrency = own->concurrency;
	}

	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(p->relid, queue->queue_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		if (!own_settings)
		{
			paused = e->paused;
			concurrency = e->concurrency;
		}
		ij_reserve_locked(e, paused, concurrency, want, adm);
		ij_read_cursor_locked(e, now, adm);
		SpinLockRelease(&e->mutex);
		adm->shared = true;
	}
	LWLockRelease(ij_lock);
	p->reserved += adm->raised;
	/* a claim locks waiting jobs: if it aborts, others may have passed them */
	if (adm->granted > 0)
		p->reset_on_abort = true;
}

/*
 * A claim leased used of the adm->granted slots it may lease: give back now
 * what it reserved for the others.  What it keeps stays reserved until the
 * transaction commits (when its jobs become active) or aborts.  A claim
 * that found no job becomes a waiter.  The cursor moves past the last job
 * leased (to the end if none), unless something lowered it since the claim
 * read it.
 */
void
ij_admit_done(const IjQueue *queue, IjAdmission *adm, int used,
			  int32 last_priority, int64 last_job_id)
{
	IjPending  *p;
	IjQueueState *e;
	bool		wait = (used == 0 && adm->granted > 0);
	IjPos		next = ij_pos_end;
	int64		keep;
	int			unused;

	if (!adm->shared || adm->granted == 0)
		return;
	if (used > 0)
	{
		next.np = -(int64) last_priority;
		next.id = last_job_id + 1;
	}
	/* the reservation this transaction needs now, beyond what it had */
	keep = Max(adm->own_reserved, adm->own_delta + used) - adm->own_reserved;
	unused = adm->raised - (int) Max(0, keep);

	p = ij_pending(queue->queue_id);
	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(ij_job_relid(), queue->queue_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->reserved -= unused;
		if (wait)
		{
			if (e->job_waiters < PG_INT32_MAX)
				e->job_waiters++;
			adm->self_notify = e->job_wakers > 0 ||
				e->job_wake_seq != adm->job_wake_seq;
		}
		/*
		 * The argument of doc/claim-cursor.md needs the claim's snapshot to
		 * be taken after it read the cursor: not so in REPEATABLE READ.
		 */
		if (!IsolationUsesXactSnapshot() &&
			e->cursor_version == adm->cursor_version &&
			ij_pos_cmp(next, e->cursor) > 0)
			e->cursor = next;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(ij_lock);
	p->reserved -= unused;
}

/*
 * This transaction makes a job claimable at a position (or, for
 * ij_cursor_reset, anywhere): lower the queue's cursor now, so that this
 * transaction's own claims see it, and again when it commits.
 */
static void
ij_lower(int32 queue_id, IjPos pos)
{
	IjPending  *p;
	IjQueueState *e;

	if (!ij_shmem_active())
		return;
	p = ij_pending(queue_id);
	LWLockAcquire(ij_lock, LW_SHARED);
	e = ij_find(ij_job_relid(), queue_id);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		ij_lower_locked(e, pos);
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(ij_lock);
	p->lowest = p->lowered ? ij_pos_min(p->lowest, pos) : pos;
	p->lowered = true;
}

/* this transaction makes a job claimable: lower the queue's cursor to it */
void
ij_cursor_lower(int32 queue_id, int32 priority, int64 job_id)
{
	IjPos		pos;

	pos.np = -(int64) priority;
	pos.id = job_id;
	ij_lower(queue_id, pos);
}

/* this transaction makes jobs claimable anywhere: reset the cursor */
void
ij_cursor_reset(int32 queue_id)
{
	ij_lower(queue_id, ij_pos_start);
}

/* this transaction locks waiting jobs of a queue: reset the cursor if it aborts */
void
ij_locks_waiting(int32 queue_id)
{
	if (ij_shmem_active())
		ij_pending(queue_id)->reset_on_abort = true;
}
