/*-------------------------------------------------------------------------
 *
 * bulk.c
 *	  Inserting many jobs at once, the way COPY FROM does.
 *
 * enqueue_many() adds jobs by the thousand.  Through the executor, each
 * row would go through an INSERT plan, and be written and WAL-logged on its
 * own.  Here the rows are formed in slots and written with
 * table_multi_insert() (several rows per heap page and WAL record), then
 * their index entries are made with ExecInsertIndexTuples(), which also
 * evaluates the partial indexes' predicates and the claim index's
 * expression, and the table's constraints are checked with
 * ExecConstraints(), as COPY does.  The job table has no triggers, rules
 * or foreign keys.
 *
 * Each job's id is taken from the sequence when the job is added, so ids
 * follow the order in which the caller adds jobs.
 *
 * src/bulk.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "immich_jobs.h"

/* the columns a new job has; the others are NULL */
typedef enum IjBulkColumn
{
	COL_JOB_ID,
	COL_QUEUE_ID,
	COL_STATE,
	COL_PRIORITY,
	COL_RUN_AT,
	COL_CREATED_AT,
	COL_ATTEMPT,
	COL_MAX_ATTEMPTS,
	COL_JOB_NAME,
	COL_PAYLOAD,
	NUM_COLS
} IjBulkColumn;

static const char *const col_names[NUM_COLS] = {
	"job_id", "queue_id", "state", "priority", "run_at", "created_at",
	"attempt", "max_attempts", "job_name", "payload"
};

struct IjBulk
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	TupleDesc	tupdesc;		/* unpinned copy, for the slots */
	Oid			seqid;
	AttrNumber	attnum[NUM_COLS];
	AttrNumber	kept_attnum;	/* dedup_kept (1.2), InvalidAttrNumber before */
	int			nslots;
	TupleTableSlot *slots[IJ_BATCH_SIZE];
};

/*
 * Open the job table for bulk insertion.  The caller adds rows with
 * ij_bulk_add(), writes them with ij_bulk_flush() at most IJ_BATCH_SIZE at
 * a time, and ends with ij_bulk_end().
 */
IjBulk *
ij_bulk_begin(Oid relid)
{
	IjBulk	   *bulk = (IjBulk *) palloc0(sizeof(IjBulk));
	RangeTblEntry *rte;

	/*
	 * The executor expects the caller to hold the range table's locks (the
	 * parser takes them for a query): lock the table until the end of the
	 * transaction, as an INSERT or a COPY does.  Its indexes cannot go away
	 * while we hold it.
	 */
	LockRelationOid(relid, RowExclusiveLock);

	bulk->estate = CreateExecutorState();

	/* a range table of one entry, as ExecConstraints reports errors by it */
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 160000
	{
		RTEPermissionInfo *perminfo = makeNode(RTEPermissionInfo);

		perminfo->relid = relid;
		perminfo->requiredPerms = ACL_INSERT;
		rte->perminfoindex = 1;
#if PG_VERSION_NUM >= 180000
		/* 18: the relations that survive partition pruning (all: just one) */
		ExecInitRangeTable(bulk->estate, list_make1(rte), list_make1(perminfo),
						   bms_make_singleton(1));
#else
		ExecInitRangeTable(bulk->estate, list_make1(rte), list_make1(perminfo));
#endif
	}
#else
	ExecInitRangeTable(bulk->estate, list_make1(rte));
#endif

	bulk->rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(bulk->estate, bulk->rri, 1);
	bulk->rel = bulk->rri->ri_RelationDesc;
	ExecOpenIndices(bulk->rri, false);
	bulk->bistate = GetBulkInsertState();

	/*
	 * The slots get a copy of the tuple descriptor that is not reference
	 * counted: a slot made with the relation's own descriptor pins it in the
	 * resource owner, a cost that showed in profiles at 1,000 slots a call.
	 */
	bulk->tupdesc = CreateTupleDescCopy(RelationGetDescr(bulk->rel));

	bulk->seqid = get_relname_relid("job_id_seq",
									RelationGetNamespace(bulk->rel));
	if (!OidIsValid(bulk->seqid))
		elog(ERROR, "sequence immich_jobs.job_id_seq does not exist");
	for (int c = 0; c < NUM_COLS; c++)
		bulk->attnum[c] = attnameAttNum(bulk->rel, col_names[c], false);
	bulk->kept_attnum = attnameAttNum(bulk->rel, "dedup_kept", false);
	return bulk;
}

/*
 * Add a new job to the batch (the batch must not be full).  Returns its
 * id.  The name and payload must stay valid until the next flush.
 */
int64
ij_bulk_add(IjBulk *bulk, int32 queue_id, char state, int32 priority,
			TimestampTz run_at, int32 max_attempts, text *name, Jsonb *payload)
{
	TupleTableSlot *slot;
	int64		job_id;
	Datum		values[NUM_COLS];

	Assert(bulk->nslots < IJ_BATCH_SIZE);
	if (bulk->slots[bulk->nslots] == NULL)
		bulk->slots[bulk->nslots] = ExecInitExtraTupleSlot(bulk->estate,
														   bulk->tupdesc,
														   table_slot_callbacks(bulk->rel));
	slot = bulk->slots[bulk->nslots];
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * bulk->tupdesc->natts);

	job_id = nextval_internal(bulk->seqid, false);
	values[COL_JOB_ID] = Int64GetDatum(job_id);
	values[COL_QUEUE_ID] = Int32GetDatum(queue_id);
	values[COL_STATE] = CharGetDatum(state);
	values[COL_PRIORITY] = Int32GetDatum(priority);
	values[COL_RUN_AT] = TimestampTzGetDatum(run_at);
	values[COL_CREATED_AT] =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[COL_ATTEMPT] = Int32GetDatum(0);
	values[COL_MAX_ATTEMPTS] = Int32GetDatum(max_attempts);
	values[COL_JOB_NAME] = PointerGetDatum(name);
	values[COL_PAYLOAD] = JsonbPGetDatum(payload);
	for (int c = 0; c < NUM_COLS; c++)
	{
		slot->tts_values[bulk->attnum[c] - 1] = values[c];
		slot->tts_isnull[bulk->attnum[c] - 1] = false;
	}
	/* jobs added in bulk have no dedup key */
	if (bulk->kept_attnum != InvalidAttrNumber)
	{
		slot->tts_values[bulk->kept_attnum - 1] = BoolGetDatum(false);
		slot->tts_isnull[bulk->kept_attnum - 1] = false;
	}
	ExecStoreVirtualTuple(slot);

	/* NOT NULL and CHECK constraints, as for any insert */
	ExecConstraints(bulk->rri, slot, bulk->estate);
	bulk->nslots++;
	return job_id;
}

/*
 * Write the batched rows and their index entries.  The caller runs it in a
 * memory context it resets afterwards: table_multi_insert allocates there.
 */
void
ij_bulk_flush(IjBulk *bulk)
{
	ExprContext *econtext = GetPerTupleExprContext(bulk->estate);

	if (bulk->nslots == 0)
		return;
	table_multi_insert(bulk->rel, bulk->slots, bulk->nslots,
					   GetCurrentCommandId(true), 0, bulk->bistate);
	for (int i = 0; i < bulk->nslots; i++)
	{
		List	   *recheck;

		recheck = ExecInsertIndexTuples(bulk->rri, bulk->slots[i],
										bulk->estate, false, false, NULL,
										NIL
#if PG_VERSION_NUM >= 160000
										,false
#endif
			);
		list_free(recheck);
		ResetExprContext(econtext);
	}
	bulk->nslots = 0;
	/* let the statements that follow see the rows */
	CommandCounterIncrement();
}

void
ij_bulk_end(IjBulk *bulk)
{
	ij_bulk_flush(bulk);
	FreeBulkInsertState(bulk->bistate);
	ExecResetTupleTable(bulk->estate->es_tupleTable, false);
	ExecCloseResultRelations(bulk->estate);	/* and its indexes */
	ExecCloseRangeTableRelations(bulk->estate);
	FreeExecutorState(bulk->estate);
	pfree(bulk);
}
