/*-------------------------------------------------------------------------
 *
 * xact.c
 *	  Transactional updates of the shared per-queue state: what each
 *	  (sub)transaction has done to each queue, applied to shared memory when
 *	  it commits and undone when it aborts.
 *
 * A function that changes jobs records its deltas in backend-local
 * IjPending entries (one per queue and subtransaction level).  They are
 * applied to shared memory by the commit callback, which runs after the
 * transaction has become visible to others, and discarded by the abort
 * callbacks.  Reservations and "wakers in flight" counters are the
 * exception: they take effect at once, and end-of-transaction undoes them.
 * Until a commit is applied the shared counts lag the table by that one
 * transaction, always on the safe side for admission: a completed job keeps
 * its slot until its completion is visible.
 *
 * src/xact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"

#include "shared.h"
#include "xact.h"

/* this transaction's changes, in TopTransactionContext */
static List *pending = NIL;

/*
 * This transaction's pending entry for a queue at the current nesting level.
 */
IjPending *
ij_pending(int32 queue_id)
{
	int			level = GetCurrentTransactionNestLevel();
	Oid			relid = ij_job_relid();
	ListCell   *lc;
	IjPending  *p;
	MemoryContext oldcxt;

	foreach(lc, pending)
	{
		p = (IjPending *) lfirst(lc);
		if (p->queue_id == queue_id && p->nest_level == level &&
			p->relid == relid)
			return p;
	}

	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	p = (IjPending *) palloc0(sizeof(IjPending));
	p->relid = relid;
	p->queue_id = queue_id;
	p->nest_level = level;
	pending = lappend(pending, p);
	MemoryContextSwitchTo(oldcxt);
	return p;
}

/* has this transaction recorded anything for a queue, at any level? */
bool
ij_has_pending(Oid relid, int32 queue_id)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);

		if (p->queue_id == queue_id && p->relid == relid)
			return true;
	}
	return false;
}

/*
 * This transaction's share of a queue over all its (sub)transaction levels:
 * its net change of the number of active jobs, and what it holds reserved.
 */
void
ij_own_share(Oid relid, int32 queue_id, int64 *delta, int64 *reserved)
{
	ListCell   *lc;

	*delta = 0;
	*reserved = 0;
	foreach(lc, pending)
	{
		IjPending  *q = (IjPending *) lfirst(lc);

		if (q->queue_id == queue_id && q->relid == relid)
		{
			*delta += q->delta[IJ_COUNT_ACTIVE];
			*reserved += q->reserved;
		}
	}
}

/*
 * The latest settings this transaction gave a queue, at any level, or NULL
 * if it changed none.
 */
const IjQueue *
ij_own_settings(Oid relid, int32 queue_id)
{
	const IjQueue *settings = NULL;
	ListCell   *lc;

	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);

		if (p->queue_id == queue_id && p->relid == relid && p->has_settings)
			settings = &p->settings;
	}
	return settings;
}

/* add this transaction's changes of a queue's counts, at every level */
void
ij_add_own_counts(Oid relid, int32 queue_id, int64 *counts)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);

		if (p->queue_id == queue_id && p->relid == relid)
			for (int c = 0; c < IJ_NUM_COUNTS; c++)
				counts[c] += p->delta[c];
	}
}

/* the counter of a job state */
static int
ij_count_of_state(char state)
{
	switch (state)
	{
		case IJ_WAITING:
			return IJ_COUNT_WAITING;
		case IJ_DELAYED:
			return IJ_COUNT_DELAYED;
		case IJ_ACTIVE:
			return IJ_COUNT_ACTIVE;
		case IJ_FAILED:
			return IJ_COUNT_FAILED;
		case IJ_CANCELLED:
			return IJ_COUNT_CANCELLED;
		case 'c':
			return IJ_COUNT_COMPLETED;
	}
	elog(ERROR, "unexpected immich_jobs job state \"%c\"", state);
	return -1;					/* keep compiler quiet */
}

/*
 * Record that n jobs of a queue moved from one state to another, for the
 * counters.  A state of '\0' means "none" (a new job, or a deleted one); 'c'
 * stands for completed.
 */
void
ij_count_move(int32 queue_id, char from, char to, int64 n)
{
	IjPending  *p;

	if (!ij_shmem_active() || n == 0 || from == to)
		return;
	p = ij_pending(queue_id);
	if (from != '\0')
		p->delta[ij_count_of_state(from)] -= n;
	if (to != '\0')
		p->delta[ij_count_of_state(to)] += n;
}

/* add n to one counter of a queue (n may be negative) */
void
ij_count_add(int32 queue_id, IjCount count, int64 n)
{
	if (!ij_shmem_active() || n == 0)
		return;
	ij_pending(queue_id)->delta[count] += n;
}

/*
 * A queue was created by this transaction: give it an entry now, removed
 * again if the transaction aborts.
 */
void
ij_queue_created(const IjQueue *queue)
{
	IjPending  *p;
	IjQueueState *e;
	bool		found;

	if (!ij_shmem_active())
		return;
	p = ij_pending(queue->queue_id);
	ij_make_room(1);
	LWLockAcquire(ij_lock, LW_EXCLUSIVE);
	e = ij_enter(ij_job_relid(), queue->queue_id, queue, &found);
	LWLockRelease(ij_lock);
	p->created = e != NULL && !found;
	if (e == NULL)
		ij_table_full(queue->name);
}

/* this transaction changed a queue's settings: publish them at commit */
void
ij_queue_settings_changed(const IjQueue *queue)
{
	IjPending  *p;

	if (!ij_shmem_active())
		return;
	p = ij_pending(queue->queue_id);
	p->has_settings = true;
	p->settings = *queue;
}

/* a queue is dropped by this transaction: remove its entry at commit */
void
ij_queue_dropped(int32 queue_id)
{
	if (!ij_shmem_active())
		return;
	ij_pending(queue_id)->dropped = true;
}

/*
 * Apply (commit) or undo (abort) one pending entry.  Never fails.
 */
static void
ij_finish_pending(IjPending *p, bool commit)
{
	IjQueueState *e;
	bool		remove = commit ? p->dropped : p->created;

	LWLockAcquire(ij_lock, remove ? LW_EXCLUSIVE : LW_SHARED);
	e = ij_find(p->relid, p->queue_id);
	if (e != NULL && remove)
		hash_search(ij_queues, &e->key, HASH_REMOVE, NULL);
	else if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->reserved -= p->reserved;
		e->job_wakers -= p->job_wakers;
		e->slot_wakers -= p->slot_wakers;
		if (commit)
		{
			for (int c = 0; c < IJ_NUM_COUNTS; c++)
				e->count[c] += p->delta[c];
			if (p->job_wakers > 0)
				e->job_wake_seq++;
			/* every waiter listens, so our NOTIFY reaches all of them */
			if (p->notified)
			{
				e->job_waiters = 0;
				e->slot_waiters = 0;
			}
			/* our jobs are visible now: lower the cursor again */
			if (p->lowered)
				ij_lower_locked(e, p->lowest);
			if (p->has_settings)
			{
				e->concurrency = p->settings.concurrency;
				e->max_attempts = p->settings.max_attempts;
				e->paused = p->settings.paused;
				e->lease_timeout = p->settings.lease_timeout;
			}
		}
		else if (p->reset_on_abort)
		{
			/* jobs we had locked are waiting again, maybe behind the cursor */
			ij_lower_locked(e, ij_pos_start);
		}
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(ij_lock);
}

/* has this transaction changed anything that its end must apply or undo? */
static bool
ij_pending_matters(void)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);

		if (p->reserved != 0 || p->job_wakers != 0 || p->slot_wakers != 0 ||
			p->notified || p->created || p->dropped || p->lowered ||
			p->reset_on_abort || p->has_settings)
			return true;
		for (int c = 0; c < IJ_NUM_COUNTS; c++)
			if (p->delta[c] != 0)
				return true;
	}
	return false;
}

/* apply this transaction's changes at commit, undo them at abort */
static void
ij_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	ListCell   *lc;

	ij_preload_notice_at(event);

	if (pending == NIL)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (!ij_pending_matters())
			{
				pending = NIL;
				break;
			}
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has changed immich_jobs jobs")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
			foreach(lc, pending)
				ij_finish_pending((IjPending *) lfirst(lc),
								  event == XACT_EVENT_COMMIT);
			pending = NIL;
			break;
		case XACT_EVENT_PREPARE:
			/* cannot happen: PRE_PREPARE refused it */
			pending = NIL;
			break;
		default:
			break;
	}
}

/*
 * At subtransaction commit, hand the subtransaction's changes to its
 * parent; at subtransaction abort, undo them.
 */
static void
ij_subxact_callback(SubXactEvent event,
					SubTransactionId mySubid pg_attribute_unused(),
					SubTransactionId parentSubid pg_attribute_unused(),
					void *arg pg_attribute_unused())
{
	int			level = GetCurrentTransactionNestLevel();
	List	   *keep = NIL;
	ListCell   *lc;
	MemoryContext oldcxt;

	if (pending == NIL)
		return;
	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;

	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	foreach(lc, pending)
	{
		IjPending  *p = (IjPending *) lfirst(lc);
		IjPending  *parent = NULL;
		ListCell   *lc2;

		if (p->nest_level < level)
		{
			keep = lappend(keep, p);
			continue;
		}
		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			ij_finish_pending(p, false);
			continue;
		}

		/* commit: merge into the parent level's entry, or become it */
		foreach(lc2, pending)
		{
			IjPending  *q = (IjPending *) lfirst(lc2);

			if (q->queue_id == p->queue_id && q->relid == p->relid &&
				q->nest_level == level - 1)
				parent = q;
		}
		if (parent == NULL)
		{
			p->nest_level = level - 1;
			keep = lappend(keep, p);
			continue;
		}
		for (int c = 0; c < IJ_NUM_COUNTS; c++)
			parent->delta[c] += p->delta[c];
		parent->reserved += p->reserved;
		parent->job_wakers += p->job_wakers;
		parent->slot_wakers += p->slot_wakers;
		parent->notified |= p->notified;
		parent->created |= p->created;
		parent->dropped |= p->dropped;
		if (p->lowered)
		{
			parent->lowest = parent->lowered ?
				ij_pos_min(parent->lowest, p->lowest) : p->lowest;
			parent->lowered = true;
		}
		parent->reset_on_abort |= p->reset_on_abort;
		if (p->has_settings)
		{
			parent->has_settings = true;
			parent->settings = p->settings;
		}
	}
	list_free(pending);
	pending = keep;
	MemoryContextSwitchTo(oldcxt);
}

/* called when the library is loaded */
void
ij_register_xact_callbacks(void)
{
	RegisterXactCallback(ij_xact_callback, NULL);
	RegisterSubXactCallback(ij_subxact_callback, NULL);
}
