/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Checks of the SQL functions' arguments, shared by every file that
 *	  defines SQL functions: NULLs, queue names, ranges, sizes and times.
 *
 * Each check raises the error the SQL interface documents (22004 for a
 * NULL, 22023 for a value out of range, 54000 for a value too large).
 *
 * src/args.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "immich_jobs.h"

/*
 * Check a queue name: 1 to 63 characters of [A-Za-z0-9_.:-].
 */
void
ij_check_queue_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > IJ_QUEUE_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid queue name \"%s\"", name),
				 errdetail("A queue name has 1 to %d characters.",
						   IJ_QUEUE_NAME_MAX)));

	for (const char *c = name; *c; c++)
	{
		if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			(*c >= '0' && *c <= '9') ||
			*c == '_' || *c == '.' || *c == ':' || *c == '-')
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid queue name \"%s\"", name),
				 errdetail("A queue name may contain only letters A to Z and a to z, digits, and the characters \"_\", \".\", \":\" and \"-\".")));
	}
}

/* raise 22004 if argument argno is NULL */
void
ij_require_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/* the queue_name argument argno, checked */
char *
ij_queue_name_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *name;

	ij_require_arg(fcinfo, argno, "queue_name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	ij_check_queue_name(name);
	return name;
}

/* raise 22023 unless lo <= value <= hi */
void
ij_check_int_range(const char *argname, int32 value, int32 lo, int32 hi)
{
	if (value < lo || value > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %d and %d", argname, lo, hi),
				 errdetail("The value given was %d.", value)));
}

static int
ij_interval_cmp(Interval *a, Interval *b)
{
	return DatumGetInt32(DirectFunctionCall2(interval_cmp,
											 IntervalPGetDatum(a),
											 IntervalPGetDatum(b)));
}

/*
 * Raise 22023 unless the interval lies between lo and hi seconds (hi is
 * a whole number of days).  Months are refused: their length varies, and
 * interval comparison counts them as 30 days, so that '3500000 mon
 * -104999993 days' would pass for 7 days and add 9,000 years to a time.
 */
void
ij_check_interval_range(const char *argname, Interval *value,
						int64 lo_seconds, int32 hi_days)
{
	Interval	lo = {0};
	Interval	hi = {0};

	lo.time = lo_seconds * USECS_PER_SEC;
	hi.day = hi_days;
	if (value->month != 0 ||
		ij_interval_cmp(value, &lo) < 0 || ij_interval_cmp(value, &hi) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %s and %d days", argname,
						lo_seconds == 0 ? "0" : "1 second", hi_days),
				 value->month != 0 ?
				 errdetail("The value given, %s, has months or years; give days instead.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(value)))) :
				 errdetail("The value given was %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(value))))));
}

/* raise 22023 if a run_at is infinite: it would never come, or always be past */
void
ij_check_run_at(TimestampTz run_at)
{
	if (TIMESTAMP_NOT_FINITE(run_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("run_at must be a finite time"),
				 errdetail("The value given was %s.",
						   TIMESTAMP_IS_NOBEGIN(run_at) ? "-infinity" : "infinity")));
}

/*
 * Raise 54000 if a value of the given size in bytes is over a limit; what
 * names the value, setting the setting that holds the limit.
 */
void
ij_check_size(const char *what, Size size, int limit, const char *setting)
{
	if (size > (Size) limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large", what),
				 errdetail("It has %zu bytes; %s is %d bytes.", size, setting, limit),
				 errhint("Keep large data outside the queue, or raise %s.", setting)));
}
