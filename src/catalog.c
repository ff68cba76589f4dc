/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Looking up the extension's own objects: the job table, the lease
 *	  token sequence, a queue's name.
 *
 * The job table's OID is part of the key of every entry of the shared
 * table (shared.c), which keeps the entries of another installation of the
 * extension in the same database (one in a CREATE EXTENSION that may roll
 * back) apart from this one's.  It is looked up once per transaction.
 *
 * src/catalog.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "immich_jobs.h"

/* the job table's OID, looked up once per transaction */
static Oid	cached_relid = InvalidOid;
static LocalTransactionId cached_relid_lxid = InvalidLocalTransactionId;

#if PG_VERSION_NUM >= 170000
#define MY_LXID (MyProc->vxid.lxid)
#else
#define MY_LXID (MyProc->lxid)
#endif

/* the OID of immich_jobs.job, looked up once per transaction */
Oid
ij_job_relid(void)
{
	if (cached_relid_lxid != MY_LXID)
	{
		Oid			nsp = get_namespace_oid(IJ_SCHEMA, false);

		cached_relid = get_relname_relid("job", nsp);
		if (!OidIsValid(cached_relid))
			elog(ERROR, "table immich_jobs.job does not exist");
		cached_relid_lxid = MY_LXID;
	}
	return cached_relid;
}

/* the OID of one of the extension's relations, immich_jobs.<name> */
Oid
ij_catalog_relid(const char *name)
{
	Oid			relid;

	relid = get_relname_relid(name, get_namespace_oid(IJ_SCHEMA, false));
	if (!OidIsValid(relid))
		elog(ERROR, "relation immich_jobs.%s does not exist", name);
	return relid;
}

/* a queue's name, or NULL if it is gone; used where only the id is known */
char *
ij_queue_name_by_id(int32 queue_id)
{
	Datum		values[1];
	bool		isnull;

	values[0] = Int32GetDatum(queue_id);
	if (ij_execute(IJ_PLAN_QUEUE_NAME, values, NULL, 1) == 0)
		return NULL;
	return TextDatumGetCString(ij_result(0, ij_result_col("queue_name"),
										 &isnull));
}
