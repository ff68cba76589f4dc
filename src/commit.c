/*-------------------------------------------------------------------------
 *
 * commit.c
 *	  How transactions that only move leases commit: the setting
 *	  immich_jobs.synchronous_lease_commit.
 *
 * A claim, a completion, a failure, a heartbeat or a release that a server
 * crash loses costs little: the job runs again, and the token of the lost
 * lease is refused (loader.c moves the token sequence on after every
 * start, so no token is ever handed out twice).  Waiting for the WAL flush
 * at every such commit is what bounds a worker that leases and completes
 * jobs one call after the other.  With synchronous_lease_commit = off, a
 * transaction whose every WAL record was written by the lease functions
 * (claim, complete, complete_many, complete_and_claim, fail, heartbeat,
 * release) commits as with synchronous_commit = off: it is visible at once
 * and reaches the disk within three wal_writer_delay.
 *
 * Anything else the transaction wrote makes it commit as synchronous_commit
 * says: an enqueue, any other function of the extension, the caller's own
 * tables.  The two are told apart by XactLastRecEnd, the end of the last WAL
 * record this transaction wrote (0 until it writes one): each lease
 * function checks on entry that it has not moved since the last lease
 * function returned, and notes where it is on return; at commit it must
 * still be there.
 *
 * Only with the library preloaded: the token sequence is moved on when the
 * shared counters are loaded, which does not happen without the preload.
 *
 * PREPARE TRANSACTION is refused after any call that locked or changed the
 * extension's rows, with or without the preload: a prepared transaction
 * would keep those locks, the slots it reserved and the leases it took,
 * across restarts, until somebody ends it by hand, and the shared counters
 * cannot follow a transaction that commits in another session.
 *
 * src/commit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "utils/guc.h"

#include "immich_jobs.h"

/* what this transaction has written so far */
typedef enum IjWrites
{
	IJ_WROTE_NOTHING,			/* no lease function has run yet */
	IJ_WROTE_LEASES,			/* only lease functions wrote WAL */
	IJ_WROTE_OTHER				/* something else did */
} IjWrites;

static IjWrites xact_writes = IJ_WROTE_NOTHING;

/* this transaction called a function that locks or changes jobs or queues */
static bool xact_used_jobs = false;

/* XactLastRecEnd when the last lease function returned */
static XLogRecPtr lease_wal_end = InvalidXLogRecPtr;

/*
 * A function that locks or changes the extension's rows starts: the
 * transaction may no longer be prepared.
 */
void
ij_xact_uses_jobs(void)
{
	xact_used_jobs = true;
}

/* a lease function starts: has anybody else written since the last one? */
void
ij_lease_call_begin(void)
{
	XLogRecPtr	expected;

	ij_xact_uses_jobs();

	expected = xact_writes == IJ_WROTE_NOTHING ?
		InvalidXLogRecPtr : lease_wal_end;
	if (XactLastRecEnd != expected)
		xact_writes = IJ_WROTE_OTHER;
	else if (xact_writes == IJ_WROTE_NOTHING)
		xact_writes = IJ_WROTE_LEASES;
}

/* a lease function returns: what it wrote is a lease's */
void
ij_lease_call_end(void)
{
	lease_wal_end = XactLastRecEnd;
}

static void
ij_commit_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (xact_writes == IJ_WROTE_LEASES &&
				XactLastRecEnd == lease_wal_end &&
				!ij_synchronous_lease_commit && ij_shmem_active())
				(void) set_config_option("synchronous_commit", "off",
										 PGC_USERSET, PGC_S_SESSION,
										 GUC_ACTION_LOCAL, true, 0, false);
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (xact_used_jobs)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has locked or changed immich_jobs jobs"),
						 errdetail("A prepared transaction would hold their locks, leases and admission slots until it is ended by hand, across restarts.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			xact_writes = IJ_WROTE_NOTHING;
			lease_wal_end = InvalidXLogRecPtr;
			xact_used_jobs = false;
			break;
		default:
			break;
	}
}

void
ij_register_commit_callback(void)
{
	RegisterXactCallback(ij_commit_xact_callback, NULL);
}
