/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Wake-ups: sending NOTIFY only when a claim may be waiting for it.
 *
 * A claim that comes back empty announces itself as a waiter; a transaction
 * that makes jobs runnable (or frees a slot) sends NOTIFY if it sees a
 * waiter.  Both sides do that under the entry's spinlock, so one of them
 * sees the other: either the waker sees the waiter, or the waiter sees the
 * waker in flight (job_wakers) or already committed since the claim started
 * (job_wake_seq changed), and then notifies itself so that its client
 * claims again (ij_admit_done, in admission.c, is the waiter's side).
 *
 * Without shared state for a queue, every waking transaction notifies.
 *
 * src/wakeup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/async.h"

#include "shared.h"
#include "xact.h"

/*
 * This transaction makes jobs of a queue runnable (IJ_WAKE_JOBS) or frees
 * slots in it (IJ_WAKE_SLOTS): send NOTIFY immich_jobs, '<queue>' if a claim
 * may be waiting for that.  queue_name may be NULL if the caller does not
 * have it at hand.
 */
void
ij_wake(int32 queue_id, const char *queue_name, IjWakeKind kind)
{
	IjPending  *p;
	IjQueueState *e;
	bool		notify = false;
	bool		known = false;
	char		name[IJ_QUEUE_NAME_MAX + 1];

	if (ij_shmem_active())
	{
		p = ij_pending(queue_id);
		LWLockAcquire(ij_lock, LW_SHARED);
		e = ij_find(ij_job_relid(), queue_id);
		if (e != NULL)
		{
			SpinLockAcquire(&e->mutex);
			if (kind == IJ_WAKE_JOBS)
			{
				if (p->job_wakers == 0)
				{
					e->job_wakers++;
					p->job_wakers++;
				}
				notify = e->job_waiters > 0;
			}
			else
			{
				if (p->slot_wakers == 0)
				{
					e->slot_wakers++;
					p->slot_wakers++;
				}
				notify = e->slot_waiters > 0;
			}
			SpinLockRelease(&e->mutex);
			memcpy(name, e->name, sizeof(name));
			known = true;
		}
		LWLockRelease(ij_lock);
		if (notify)
		{
			p->notified = true;
			if (queue_name == NULL)
				queue_name = name;
		}
	}

	/* without shared state for the queue, anybody may be waiting */
	if (!known || notify)
	{
		if (queue_name == NULL)
			queue_name = ij_queue_name_by_id(queue_id);
		if (queue_name != NULL)
			Async_Notify(IJ_CHANNEL, queue_name);
	}
}

/*
 * For the background worker: send NOTIFY for every queue of this database
 * where a claim came back empty although jobs are waiting.  That happens
 * when the jobs were locked by a transaction that then aborted (a claim,
 * cancel, clear), or were invisible to a REPEATABLE READ claim: nobody
 * else would wake the worker that waits for them.  Returns how many queues.
 */
int
ij_wake_stranded(void)
{
	HASH_SEQ_STATUS scan;
	IjQueueState *e;
	Oid			relid;
	List	   *ids = NIL;
	List	   *names = NIL;
	ListCell   *lc1;
	ListCell   *lc2;

	if (!ij_shmem_active())
		return 0;
	relid = ij_job_relid();
	LWLockAcquire(ij_lock, LW_SHARED);
	hash_seq_init(&scan, ij_queues);
	while ((e = (IjQueueState *) hash_seq_search(&scan)) != NULL)
	{
		bool		stranded;

		if (e->key.dbid != MyDatabaseId || e->key.relid != relid ||
			e->key.queue_id == 0)
			continue;
		SpinLockAcquire(&e->mutex);
		stranded = e->job_waiters > 0 && e->count[IJ_COUNT_WAITING] > 0 &&
			!e->paused;
		SpinLockRelease(&e->mutex);
		if (stranded)
		{
			ids = lappend_int(ids, e->key.queue_id);
			names = lappend(names, pstrdup(e->name));
		}
	}
	LWLockRelease(ij_lock);

	forboth(lc1, ids, lc2, names)
	{
		ij_pending(lfirst_int(lc1))->notified = true;
		Async_Notify(IJ_CHANNEL, (char *) lfirst(lc2));
	}
	return list_length(ids);
}
