/*
 * driver.c: the load generator of `make bench` (see test/bench/run).
 *
 * One connection per client thread, times from CLOCK_MONOTONIC, jobs that are
 * no-ops with the payload {"assetId": "<uuid>"}.  Each mode prints one line of
 * JSON on stdout.  The connection comes from the environment (PGHOST,
 * PGDATABASE, ...).  SCHEMA is the queue implementation: immich_jobs, or
 * naive (test/bench/naive.sql), whose functions take the same arguments.
 *
 *   fill SCHEMA QUEUE NJOBS PER_CALL CONNS
 *       enqueue_many NJOBS jobs, PER_CALL per call (W1, and the jobs the
 *       drains take)
 *   drain SCHEMA QUEUE CLIENTS BATCH NJOBS DEADLINE_S ON_EMPTY
 *       CLIENTS threads loop claim(max_jobs => BATCH) then complete (BATCH 1)
 *       or complete_many (BATCH > 1) until NJOBS are completed or the deadline
 *       passes (W3, W4, W5).  ON_EMPTY: after a claim that found nothing,
 *       "retry" claims again at once; "listen" sleeps until a notification
 *       (LISTEN immich_jobs) comes, as an immich_jobs worker does
 *   latency QUEUE NJOBS INTERVAL_MS
 *       one consumer LISTENs and sleeps in poll() on its socket until a
 *       notification comes, then claims until the queue is empty; one
 *       producer enqueues NJOBS jobs one per transaction, INTERVAL_MS apart;
 *       latency = claim returned - enqueue's commit returned (W6)
 *   hold QUEUE CLIENTS HOLD_S AFTER_S NJOBS ON_EMPTY
 *       drain (BATCH 1) for HOLD_S seconds while another session holds a
 *       REPEATABLE READ snapshot, then release it and drain AFTER_S seconds
 *       more; the size of immich_jobs.job before, at the end of the hold and
 *       at the end (W7)
 *   sustained QUEUE CONSUMERS PRODUCERS RATE DURATION_S WINDOW_S
 *       PRODUCERS enqueue RATE jobs/s in all for DURATION_S, one per
 *       transaction; CONSUMERS LISTEN and claim; size after WINDOW_S and at
 *       the end; latency percentiles of the jobs enqueued in the first and
 *       in the last WINDOW_S (W8)
 *   memory SCHEMA QUEUE NJOBS
 *       peak RssAnon of the backend, minus its value before, during one
 *       enqueue_many of NJOBS jobs, sampled every millisecond; SCHEMA jsonb
 *       measures only the conversion of the same argument to jsonb
 *   copy TABLE NJOBS
 *       COPY the rows of NJOBS jobs into TABLE (the bulk-load limit C)
 *
 * test/bench/driver.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* ---------------------------------------------------------------- helpers */

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fprintf(stderr, "driver: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_until(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t) t;
	ts.tv_nsec = (long) ((t - (double) ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
	{
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static long
arg_long(const char *s, const char *what)
{
	char	   *end;
	long		v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 0)
		die("bad %s: %s", what, s);
	return v;
}

static double
arg_double(const char *s, const char *what)
{
	char	   *end;
	double		v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || v < 0)
		die("bad %s: %s", what, s);
	return v;
}

static PGconn *
db_connect(void)
{
	PGconn	   *c = PQconnectdb("application_name=bench_driver");

	if (PQstatus(c) != CONNECTION_OK)
		die("connection failed: %s", PQerrorMessage(c));
	return c;
}

/* run a statement; die unless it succeeded */
static PGresult *
exec_ok(PGconn *c, const char *sql)
{
	PGresult   *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		die("%s: %s", sql, PQerrorMessage(c));
	return r;
}

static void
exec_void(PGconn *c, const char *sql)
{
	PQclear(exec_ok(c, sql));
}

static void
prepare(PGconn *c, const char *name, const char *sql, int nparams)
{
	PGresult   *r = PQprepare(c, name, sql, nparams, NULL);

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("prepare %s: %s", name, PQerrorMessage(c));
	PQclear(r);
}

static PGresult *
exec_prepared(PGconn *c, const char *name, int n, const char *const *values)
{
	PGresult   *r = PQexecPrepared(c, name, n, values, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		die("%s: %s", name, PQerrorMessage(c));
	return r;
}

/* prepare the queue functions of an implementation on a connection */
static void
prepare_queue(PGconn *c, const char *schema)
{
	char		sql[512];

	snprintf(sql, sizeof(sql),
			 "SELECT job_id, lease_token FROM %s.claim($1::text, $2::text, $3::integer)",
			 schema);
	prepare(c, "claim", sql, 3);
	snprintf(sql, sizeof(sql), "SELECT %s.complete($1::bigint, $2::bigint)", schema);
	prepare(c, "complete", sql, 2);
	snprintf(sql, sizeof(sql),
			 "SELECT %s.complete_many($1::bigint[], $2::bigint[])", schema);
	prepare(c, "complete_many", sql, 2);
	snprintf(sql, sizeof(sql),
			 "SELECT %s.enqueue($1::text, 'noop'::text, $2::jsonb)", schema);
	prepare(c, "enqueue", sql, 2);
	snprintf(sql, sizeof(sql), "SELECT %s.enqueue_many($1::text, $2::jsonb)", schema);
	prepare(c, "enqueue_many", sql, 2);
}

/* xorshift64*: payload uuids, per thread */
static uint64_t
rng_next(uint64_t *s)
{
	uint64_t	x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t
rng_seed(int k)
{
	return 0x9E3779B97F4A7C15ULL * (uint64_t) (k + 1) ^ (uint64_t) (now() * 1e9);
}

/* a version 4 uuid, 36 characters and a NUL */
static void
uuid4(uint64_t *s, char *out)
{
	uint64_t	a = rng_next(s);
	uint64_t	b = rng_next(s);

	a = (a & 0xFFFFFFFFFFFF0FFFULL) | 0x0000000000004000ULL;
	b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;
	sprintf(out, "%08x-%04x-%04x-%04x-%012llx",
			(unsigned) (a >> 32), (unsigned) ((a >> 16) & 0xFFFF),
			(unsigned) (a & 0xFFFF), (unsigned) (b >> 48),
			(unsigned long long) (b & 0xFFFFFFFFFFFFULL));
}

/* the enqueue_many argument for n jobs: [{"name": "noop", "payload": ...}, ...] */
static char *
jobs_json(uint64_t *s, long n)
{
	size_t		size = 3 + (size_t) n * 100;
	char	   *buf = malloc(size);
	char	   *p = buf;
	char		u[40];

	if (buf == NULL)
		die("out of memory");
	*p++ = '[';
	for (long i = 0; i < n; i++)
	{
		uuid4(s, u);
		p += sprintf(p, "%s{\"name\": \"noop\", \"payload\": {\"assetId\": \"%s\"}}",
					 i ? ", " : "", u);
	}
	*p++ = ']';
	*p = '\0';
	return buf;
}

static int64_t
table_size(PGconn *c)
{
	PGresult   *r = exec_ok(c, "SELECT pg_total_relation_size('immich_jobs.job')");
	int64_t		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);

	PQclear(r);
	return v;
}

/* take every notification libpq has read; returns how many */
static int
drain_notifies(PGconn *c)
{
	PGnotify   *n;
	int			k = 0;

	while ((n = PQnotifies(c)) != NULL)
	{
		PQfreemem(n);
		k++;
	}
	return k;
}

/*
 * Sleep in poll() on the connection's socket until a notification arrives
 * (returns true) or *stop is set or the deadline (a now() value) passes
 * (returns false).  The poll timeout only lets the caller see the stop flag
 * and the deadline: nothing is claimed without a notification.
 */
static bool
wait_notify(PGconn *c, atomic_int *stop, double deadline, long *notifies)
{
	int			fd = PQsocket(c);

	for (;;)
	{
		struct pollfd pfd = {.fd = fd,.events = POLLIN};
		int			k;

		if (!PQconsumeInput(c))
			die("waiting for a notification: %s", PQerrorMessage(c));
		k = drain_notifies(c);
		if (k > 0)
		{
			*notifies += k;
			return true;
		}
		if (atomic_load(stop) || now() >= deadline)
			return false;
		poll(&pfd, 1, 100);
	}
}

/* one (job id, time) record */
typedef struct Stamp
{
	int64_t		id;
	double		t;
} Stamp;

static int
stamp_cmp(const void *a, const void *b)
{
	int64_t		x = ((const Stamp *) a)->id;
	int64_t		y = ((const Stamp *) b)->id;

	return (x > y) - (x < y);
}

static int
double_cmp(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array */
static double
percentile(const double *v, long n, double p)
{
	long		k;

	if (n == 0)
		return -1;
	k = (long) ((p / 100.0) * n + 0.999999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/* --------------------------------------------------------------- fill (W1) */

typedef struct FillShared
{
	const char *schema;
	const char *queue;
	long		njobs;
	long		per_call;
	atomic_long next;			/* next job to hand out */
	pthread_barrier_t start;
	double		end[64];
} FillShared;

typedef struct ThreadArg
{
	void	   *shared;
	int			k;
} ThreadArg;

static void *
fill_thread(void *arg)
{
	ThreadArg  *ta = arg;
	FillShared *fs = ta->shared;
	PGconn	   *c = db_connect();
	uint64_t	seed = rng_seed(ta->k);

	prepare_queue(c, fs->schema);
	pthread_barrier_wait(&fs->start);
	for (;;)
	{
		long		first = atomic_fetch_add(&fs->next, fs->per_call);
		long		n;
		char	   *json;
		const char *values[2];
		PGresult   *r;

		if (first >= fs->njobs)
			break;
		n = fs->njobs - first < fs->per_call ? fs->njobs - first : fs->per_call;
		json = jobs_json(&seed, n);
		values[0] = fs->queue;
		values[1] = json;
		r = exec_prepared(c, "enqueue_many", 2, values);
		if (strtol(PQgetvalue(r, 0, 0), NULL, 10) != n)
			die("enqueue_many added %s jobs, not %ld", PQgetvalue(r, 0, 0), n);
		PQclear(r);
		free(json);
	}
	fs->end[ta->k] = now();
	PQfinish(c);
	return NULL;
}

static int
mode_fill(int argc, char **argv)
{
	FillShared	fs;
	int			conns;
	pthread_t	th[64];
	ThreadArg	ta[64];
	double		t0,
				t1 = 0;

	if (argc != 7)
		die("usage: fill SCHEMA QUEUE NJOBS PER_CALL CONNS");
	memset(&fs, 0, sizeof(fs));
	fs.schema = argv[2];
	fs.queue = argv[3];
	fs.njobs = arg_long(argv[4], "NJOBS");
	fs.per_call = arg_long(argv[5], "PER_CALL");
	conns = (int) arg_long(argv[6], "CONNS");
	if (conns < 1 || conns > 64 || fs.per_call < 1)
		die("bad CONNS or PER_CALL");
	atomic_init(&fs.next, 0);
	pthread_barrier_init(&fs.start, NULL, conns + 1);
	for (int k = 0; k < conns; k++)
	{
		ta[k].shared = &fs;
		ta[k].k = k;
		pthread_create(&th[k], NULL, fill_thread, &ta[k]);
	}
	pthread_barrier_wait(&fs.start);
	t0 = now();
	for (int k = 0; k < conns; k++)
	{
		pthread_join(th[k], NULL);
		if (fs.end[k] > t1)
			t1 = fs.end[k];
	}
	printf("{\"jobs\": %ld, \"seconds\": %.4f, \"rate\": %.1f}\n",
		   fs.njobs, t1 - t0, fs.njobs / (t1 - t0));
	return 0;
}

/* ------------------------------------------------------- drain (W3, W4, W5) */

typedef struct DrainShared
{
	const char *schema;
	const char *queue;
	int			batch;
	bool		listen;			/* on an empty claim, wait for a NOTIFY */
	long		njobs;
	double		deadline;		/* seconds after the start */
	double		t0;
	atomic_long completed;
	atomic_long claims;
	atomic_long empty;
	atomic_long stale;			/* completions refused: must stay 0 */
	atomic_long wakeups;
	atomic_int	stop;
	pthread_barrier_t ready;	/* every client connected */
	pthread_barrier_t start;	/* t0 set */
	double		last[256];		/* time of each thread's last completion */
} DrainShared;

typedef struct DrainResult
{
	bool		listen;
	long		completed;
	double		seconds;
	double		rate;
	long		claims;
	long		empty;
	long		stale;
	long		wakeups;
	bool		drained;
} DrainResult;

static void *
drain_thread(void *arg)
{
	ThreadArg  *ta = arg;
	DrainShared *ds = ta->shared;
	PGconn	   *c = db_connect();
	char		worker[32];
	char		batch[16];
	char	   *ids = malloc((size_t) ds->batch * 24 + 4);
	char	   *toks = malloc((size_t) ds->batch * 24 + 4);
	double		last = 0;

	prepare_queue(c, ds->schema);
	if (ds->listen)
		exec_void(c, "LISTEN immich_jobs");
	snprintf(worker, sizeof(worker), "bench-%d", ta->k);
	snprintf(batch, sizeof(batch), "%d", ds->batch);
	pthread_barrier_wait(&ds->ready);
	pthread_barrier_wait(&ds->start);

	while (!atomic_load(&ds->stop))
	{
		const char *values[3] = {ds->queue, worker, batch};
		PGresult   *r = exec_prepared(c, "claim", 3, values);
		int			n = PQntuples(r);
		long		done;

		atomic_fetch_add(&ds->claims, 1);
		if (n == 0)
		{
			PQclear(r);
			atomic_fetch_add(&ds->empty, 1);
			if (now() - ds->t0 >= ds->deadline)
				break;
			if (ds->listen)
			{
				long		k = 0;

				if (!wait_notify(c, &ds->stop, ds->t0 + ds->deadline, &k))
					break;
				atomic_fetch_add(&ds->wakeups, 1);
			}
			continue;
		}
		if (ds->batch == 1)
		{
			const char *cv[2] = {PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)};
			PGresult   *r2 = exec_prepared(c, "complete", 2, cv);

			done = strcmp(PQgetvalue(r2, 0, 0), "t") == 0 ? 1 : 0;
			PQclear(r2);
		}
		else
		{
			char	   *p = ids,
					   *q = toks;
			PGresult   *r2;
			const char *cv[2] = {ids, toks};

			*p++ = '{';
			*q++ = '{';
			for (int i = 0; i < n; i++)
			{
				p += sprintf(p, "%s%s", i ? "," : "", PQgetvalue(r, i, 0));
				q += sprintf(q, "%s%s", i ? "," : "", PQgetvalue(r, i, 1));
			}
			strcpy(p, "}");
			strcpy(q, "}");
			r2 = exec_prepared(c, "complete_many", 2, cv);
			done = strtol(PQgetvalue(r2, 0, 0), NULL, 10);
			PQclear(r2);
		}
		PQclear(r);
		if (done != n)
			atomic_fetch_add(&ds->stale, n - done);
		last = now();
		if (atomic_fetch_add(&ds->completed, done) + done >= ds->njobs)
			atomic_store(&ds->stop, 1);
		if (last - ds->t0 >= ds->deadline)
			break;
	}
	ds->last[ta->k] = last;
	free(ids);
	free(toks);
	PQfinish(c);
	return NULL;
}

static void
drain_run(const char *schema, const char *queue, int clients, int batch,
		  bool listen, long njobs, double deadline, DrainResult *res)
{
	DrainShared *ds = calloc(1, sizeof(DrainShared));
	pthread_t	th[256];
	ThreadArg	ta[256];
	double		t1 = 0;

	if (clients < 1 || clients > 256 || batch < 1 || batch > 10000)
		die("bad CLIENTS or BATCH");
	memset(res, 0, sizeof(*res));
	res->listen = listen;
	if (njobs <= 0)
	{
		/* nothing to drain (W7's hold took every job) */
		res->drained = true;
		free(ds);
		return;
	}
	ds->schema = schema;
	ds->queue = queue;
	ds->batch = batch;
	ds->listen = listen;
	ds->njobs = njobs;
	ds->deadline = deadline;
	pthread_barrier_init(&ds->ready, NULL, clients + 1);
	pthread_barrier_init(&ds->start, NULL, clients + 1);
	for (int k = 0; k < clients; k++)
	{
		ta[k].shared = ds;
		ta[k].k = k;
		pthread_create(&th[k], NULL, drain_thread, &ta[k]);
	}
	pthread_barrier_wait(&ds->ready);
	ds->t0 = now();
	pthread_barrier_wait(&ds->start);
	for (int k = 0; k < clients; k++)
	{
		pthread_join(th[k], NULL);
		if (ds->last[k] > t1)
			t1 = ds->last[k];
	}
	res->completed = atomic_load(&ds->completed);
	res->seconds = res->completed > 0 ? t1 - ds->t0 : deadline;
	if (res->seconds <= 0)
		res->seconds = 1e-6;
	res->rate = res->completed / res->seconds;
	res->claims = atomic_load(&ds->claims);
	res->empty = atomic_load(&ds->empty);
	res->stale = atomic_load(&ds->stale);
	res->wakeups = atomic_load(&ds->wakeups);
	res->listen = listen;
	res->drained = res->completed >= njobs;
	free(ds);
}

static void
print_drain(const char *prefix, const DrainResult *r)
{
	printf("\"%scompleted\": %ld, \"%sseconds\": %.4f, \"%srate\": %.1f, "
		   "\"%sclaims\": %ld, \"%sempty_claims\": %ld, \"%sstale\": %ld, "
		   "\"%son_empty\": \"%s\", \"%swakeups\": %ld, \"%sdrained\": %s",
		   prefix, r->completed, prefix, r->seconds, prefix, r->rate,
		   prefix, r->claims, prefix, r->empty, prefix, r->stale,
		   prefix, r->listen ? "listen" : "retry", prefix, r->wakeups,
		   prefix, r->drained ? "true" : "false");
}

static int
mode_drain(int argc, char **argv)
{
	DrainResult r;

	if (argc != 9 || (strcmp(argv[8], "retry") != 0 && strcmp(argv[8], "listen") != 0))
		die("usage: drain SCHEMA QUEUE CLIENTS BATCH NJOBS DEADLINE_S retry|listen");
	drain_run(argv[2], argv[3], (int) arg_long(argv[4], "CLIENTS"),
			  (int) arg_long(argv[5], "BATCH"), strcmp(argv[8], "listen") == 0,
			  arg_long(argv[6], "NJOBS"), arg_double(argv[7], "DEADLINE_S"), &r);
	printf("{");
	print_drain("", &r);
	printf("}\n");
	return 0;
}

/* -------------------------------------------------- hold (W7: held snapshot) */

static int
mode_hold(int argc, char **argv)
{
	const char *queue;
	bool		listen;
	int			clients;
	double		hold_s,
				after_s;
	long		njobs;
	PGconn	   *mon,
			   *holder;
	int64_t		before,
				end_hold,
				after;
	DrainResult rh,
				ra;
	PGresult   *r;
	char		xmin[32];

	if (argc != 8 || (strcmp(argv[7], "retry") != 0 && strcmp(argv[7], "listen") != 0))
		die("usage: hold QUEUE CLIENTS HOLD_S AFTER_S NJOBS retry|listen");
	listen = strcmp(argv[7], "listen") == 0;
	queue = argv[2];
	clients = (int) arg_long(argv[3], "CLIENTS");
	hold_s = arg_double(argv[4], "HOLD_S");
	after_s = arg_double(argv[5], "AFTER_S");
	njobs = arg_long(argv[6], "NJOBS");

	mon = db_connect();
	holder = db_connect();
	before = table_size(mon);
	/* as pg_dump does: one snapshot for the whole dump */
	exec_void(holder, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	r = exec_ok(holder, "SELECT backend_xmin FROM pg_stat_activity WHERE pid = pg_backend_pid()");
	snprintf(xmin, sizeof(xmin), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	if (xmin[0] == '\0')
		die("the holding session has no snapshot");

	drain_run("immich_jobs", queue, clients, 1, listen, njobs, hold_s, &rh);
	end_hold = table_size(mon);
	exec_void(holder, "COMMIT");
	PQfinish(holder);

	drain_run("immich_jobs", queue, clients, 1, listen, njobs - rh.completed,
			  after_s, &ra);
	after = table_size(mon);
	PQfinish(mon);

	printf("{\"size_before\": %" PRId64 ", \"size_end_of_hold\": %" PRId64
		   ", \"size_after\": %" PRId64 ", \"hold_duration\": %.1f"
		   ", \"after_duration\": %.1f, ",
		   before, end_hold, after, hold_s, after_s);
	print_drain("hold_", &rh);
	printf(", ");
	print_drain("after_", &ra);
	printf("}\n");
	return 0;
}

/* ------------------------------------- consumers that LISTEN (W6, W8) */

typedef struct ListenShared
{
	const char *queue;
	Stamp	   *enq;			/* enqueue commit times */
	Stamp	   *clm;			/* claim return times */
	long		cap;
	atomic_long nenq;
	atomic_long nclm;
	atomic_long claims;
	atomic_long empty;
	atomic_long wakeups;
	atomic_long notifies;
	atomic_long stale;
	atomic_int	stop;			/* consumers: finish */
	double		t_stop;			/* when they were told to */
	atomic_int	ready;			/* consumers listening, queue seen empty */
	/* producers */
	double		t0;
	double		rate;
	double		duration;
	int			producers;
	pthread_barrier_t connected;	/* every producer connected */
	pthread_barrier_t start;	/* t0 set */
} ListenShared;

static void *
consumer_thread(void *arg)
{
	ThreadArg  *ta = arg;
	ListenShared *ls = ta->shared;
	PGconn	   *c = db_connect();
	char		worker[32];

	prepare_queue(c, "immich_jobs");
	exec_void(c, "LISTEN immich_jobs");
	snprintf(worker, sizeof(worker), "bench-%d", ta->k);

	for (bool first = true;; first = false)
	{
		/* claim until the queue is empty */
		while (!atomic_load(&ls->stop))
		{
			const char *values[3] = {ls->queue, worker, "1"};
			PGresult   *r = exec_prepared(c, "claim", 3, values);
			double		t = now();

			atomic_fetch_add(&ls->claims, 1);
			if (PQntuples(r) == 0)
			{
				PQclear(r);
				atomic_fetch_add(&ls->empty, 1);
				break;
			}
			else
			{
				long		i = atomic_fetch_add(&ls->nclm, 1);
				const char *cv[2] = {PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1)};
				PGresult   *r2;

				if (i < ls->cap)
				{
					ls->clm[i].id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
					ls->clm[i].t = t;
				}
				r2 = exec_prepared(c, "complete", 2, cv);
				if (strcmp(PQgetvalue(r2, 0, 0), "t") != 0)
					atomic_fetch_add(&ls->stale, 1);
				PQclear(r2);
				PQclear(r);
			}
		}
		if (first)
			atomic_fetch_add(&ls->ready, 1);
		if (atomic_load(&ls->stop))
			break;

		{
			long		k = 0;

			if (wait_notify(c, &ls->stop, 1e300, &k))
				atomic_fetch_add(&ls->wakeups, 1);
			atomic_fetch_add(&ls->notifies, k);
		}
	}
	PQfinish(c);
	return NULL;
}

/* producer k of P: job i*P+k at t0 + (i*P+k)/rate, one per transaction */
static void *
producer_thread(void *arg)
{
	ThreadArg  *ta = arg;
	ListenShared *ls = ta->shared;
	PGconn	   *c = db_connect();
	uint64_t	seed = rng_seed(100 + ta->k);
	char		payload[80];
	char		u[40];

	prepare_queue(c, "immich_jobs");
	pthread_barrier_wait(&ls->connected);
	pthread_barrier_wait(&ls->start);
	for (long i = ta->k;; i += ls->producers)
	{
		double		due = ls->t0 + i / ls->rate;
		const char *values[2] = {ls->queue, payload};
		PGresult   *r;
		double		t;
		long		j;

		if (due - ls->t0 >= ls->duration)
			break;
		uuid4(&seed, u);
		snprintf(payload, sizeof(payload), "{\"assetId\": \"%s\"}", u);
		sleep_until(due);
		r = exec_prepared(c, "enqueue", 2, values);
		t = now();
		j = atomic_fetch_add(&ls->nenq, 1);
		if (j < ls->cap)
		{
			ls->enq[j].id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
			ls->enq[j].t = t;
		}
		PQclear(r);
	}
	PQfinish(c);
	return NULL;
}

/*
 * Latencies of the jobs enqueued in [from, to) seconds after t0, sorted;
 * returns how many.  A job never claimed counts with the time from its
 * enqueue to the end of the test (a lower bound), and in *unclaimed.
 */
static long
latencies(ListenShared *ls, double from, double to, double *out, long *unclaimed)
{
	long		ne = atomic_load(&ls->nenq);
	long		nc = atomic_load(&ls->nclm);
	long		n = 0,
				j = 0;

	if (ne > ls->cap)
		ne = ls->cap;
	if (nc > ls->cap)
		nc = ls->cap;
	*unclaimed = 0;
	for (long i = 0; i < ne; i++)
	{
		double		at = ls->enq[i].t - ls->t0;

		while (j < nc && ls->clm[j].id < ls->enq[i].id)
			j++;
		if (at < from || at >= to)
			continue;
		if (j < nc && ls->clm[j].id == ls->enq[i].id)
			out[n++] = ls->clm[j].t - ls->enq[i].t;
		else
		{
			/* never claimed: at least this long */
			out[n++] = ls->t_stop - ls->enq[i].t;
			(*unclaimed)++;
		}
	}
	qsort(out, n, sizeof(double), double_cmp);
	return n;
}

static ListenShared *
listen_setup(const char *queue, long cap, int consumers, pthread_t *cth,
			 ThreadArg *cta)
{
	ListenShared *ls = calloc(1, sizeof(ListenShared));

	ls->queue = queue;
	ls->cap = cap;
	ls->enq = calloc(cap, sizeof(Stamp));
	ls->clm = calloc(cap, sizeof(Stamp));
	if (ls->enq == NULL || ls->clm == NULL)
		die("out of memory");
	for (int k = 0; k < consumers; k++)
	{
		cta[k].shared = ls;
		cta[k].k = k;
		pthread_create(&cth[k], NULL, consumer_thread, &cta[k]);
	}
	/* wait until every consumer listens and has seen the queue empty */
	while (atomic_load(&ls->ready) < consumers)
		usleep(1000);
	return ls;
}

static void
listen_sort(ListenShared *ls)
{
	long		ne = atomic_load(&ls->nenq);
	long		nc = atomic_load(&ls->nclm);

	qsort(ls->enq, ne < ls->cap ? ne : ls->cap, sizeof(Stamp), stamp_cmp);
	qsort(ls->clm, nc < ls->cap ? nc : ls->cap, sizeof(Stamp), stamp_cmp);
}

/* wait until every enqueued job was claimed, or grace seconds */
static void
listen_finish(ListenShared *ls, double grace)
{
	double		until = now() + grace;

	while (atomic_load(&ls->nclm) < atomic_load(&ls->nenq) && now() < until)
		usleep(2000);
	ls->t_stop = now();
	atomic_store(&ls->stop, 1);
}

static int
mode_latency(int argc, char **argv)
{
	long		njobs;
	double		interval;
	ListenShared *ls;
	pthread_t	cth[1],
				pth[1];
	ThreadArg	cta[1],
				pta[1];
	double	   *lat;
	long		n,
				unclaimed;

	if (argc != 5)
		die("usage: latency QUEUE NJOBS INTERVAL_MS");
	njobs = arg_long(argv[3], "NJOBS");
	interval = arg_double(argv[4], "INTERVAL_MS") / 1000.0;
	ls = listen_setup(argv[2], njobs + 16, 1, cth, cta);
	ls->rate = 1.0 / interval;
	ls->duration = njobs * interval;
	ls->producers = 1;
	pthread_barrier_init(&ls->connected, NULL, 2);
	pthread_barrier_init(&ls->start, NULL, 2);
	pta[0].shared = ls;
	pta[0].k = 0;
	pthread_create(&pth[0], NULL, producer_thread, &pta[0]);
	pthread_barrier_wait(&ls->connected);
	ls->t0 = now() + 0.01;
	pthread_barrier_wait(&ls->start);
	pthread_join(pth[0], NULL);
	listen_finish(ls, 10);
	pthread_join(cth[0], NULL);

	listen_sort(ls);
	lat = malloc(sizeof(double) * (njobs + 16));
	n = latencies(ls, -1e9, 1e9, lat, &unclaimed);
	printf("{\"jobs\": %ld, \"measured\": %ld, \"unclaimed\": %ld, "
		   "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
		   "\"claims\": %ld, \"empty_claims\": %ld, \"wakeups\": %ld, "
		   "\"notifications\": %ld, \"stale\": %ld}\n",
		   atomic_load(&ls->nenq), n, unclaimed,
		   percentile(lat, n, 50) * 1000, percentile(lat, n, 99) * 1000,
		   (n ? lat[n - 1] : -1) * 1000,
		   atomic_load(&ls->claims), atomic_load(&ls->empty),
		   atomic_load(&ls->wakeups), atomic_load(&ls->notifies),
		   atomic_load(&ls->stale));
	return 0;
}

static int
mode_sustained(int argc, char **argv)
{
	int			consumers,
				producers;
	double		rate,
				duration,
				window;
	long		cap;
	ListenShared *ls;
	pthread_t	cth[256],
				pth[64];
	ThreadArg	cta[256],
				pta[64];
	PGconn	   *mon;
	int64_t		size_first,
				size_end;
	double	   *lat;
	long		n1,
				n2,
				u1,
				u2;
	double		p50_1,
				p99_1,
				p50_2,
				p99_2;

	if (argc != 8)
		die("usage: sustained QUEUE CONSUMERS PRODUCERS RATE DURATION_S WINDOW_S");
	consumers = (int) arg_long(argv[3], "CONSUMERS");
	producers = (int) arg_long(argv[4], "PRODUCERS");
	rate = arg_double(argv[5], "RATE");
	duration = arg_double(argv[6], "DURATION_S");
	window = arg_double(argv[7], "WINDOW_S");
	if (consumers < 1 || consumers > 256 || producers < 1 || producers > 64 ||
		rate <= 0 || window <= 0 || window * 2 > duration)
		die("bad arguments");
	cap = (long) (rate * duration) + 1000;

	mon = db_connect();
	ls = listen_setup(argv[2], cap, consumers, cth, cta);
	ls->rate = rate;
	ls->duration = duration;
	ls->producers = producers;
	pthread_barrier_init(&ls->connected, NULL, producers + 1);
	pthread_barrier_init(&ls->start, NULL, producers + 1);
	for (int k = 0; k < producers; k++)
	{
		pta[k].shared = ls;
		pta[k].k = k;
		pthread_create(&pth[k], NULL, producer_thread, &pta[k]);
	}
	pthread_barrier_wait(&ls->connected);
	ls->t0 = now() + 0.01;
	pthread_barrier_wait(&ls->start);
	sleep_until(ls->t0 + window);
	size_first = table_size(mon);
	sleep_until(ls->t0 + duration);
	size_end = table_size(mon);
	for (int k = 0; k < producers; k++)
		pthread_join(pth[k], NULL);
	listen_finish(ls, 10);
	for (int k = 0; k < consumers; k++)
		pthread_join(cth[k], NULL);
	PQfinish(mon);

	listen_sort(ls);
	lat = malloc(sizeof(double) * cap);
	n1 = latencies(ls, 0, window, lat, &u1);
	p50_1 = percentile(lat, n1, 50);
	p99_1 = percentile(lat, n1, 99);
	n2 = latencies(ls, duration - window, duration + 1e6, lat, &u2);
	p50_2 = percentile(lat, n2, 50);
	p99_2 = percentile(lat, n2, 99);
	printf("{\"target_rate\": %.1f, \"enqueued\": %ld, \"claimed\": %ld, "
		   "\"seconds\": %.1f, \"window_seconds\": %.1f, "
		   "\"size_first\": %" PRId64 ", \"size_end\": %" PRId64 ", "
		   "\"first_jobs\": %ld, \"first_unclaimed\": %ld, "
		   "\"first_p50_ms\": %.3f, \"first_p99_ms\": %.3f, "
		   "\"last_jobs\": %ld, \"last_unclaimed\": %ld, "
		   "\"last_p50_ms\": %.3f, \"last_p99_ms\": %.3f, "
		   "\"claims\": %ld, \"empty_claims\": %ld, \"wakeups\": %ld, "
		   "\"stale\": %ld}\n",
		   rate, atomic_load(&ls->nenq), atomic_load(&ls->nclm),
		   duration, window, size_first, size_end,
		   n1, u1, p50_1 * 1000, p99_1 * 1000,
		   n2, u2, p50_2 * 1000, p99_2 * 1000,
		   atomic_load(&ls->claims), atomic_load(&ls->empty),
		   atomic_load(&ls->wakeups), atomic_load(&ls->stale));
	return 0;
}

/* ------------------------------------------------------------------ memory */

typedef struct MemShared
{
	int			pid;
	atomic_int	stop;
	long		peak_kb;
	long		samples;
} MemShared;

/* RssAnon of a process, in kB; -1 if it cannot be read */
static long
rss_anon_kb(int pid)
{
	char		path[64];
	char		buf[4096];
	int			fd;
	ssize_t		n;
	char	   *p;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "RssAnon:");
	return p ? strtol(p + 8, NULL, 10) : -1;
}

static void *
mem_sampler(void *arg)
{
	MemShared  *ms = arg;
	struct timespec ms1 = {0, 1000000};

	while (!atomic_load(&ms->stop))
	{
		long		v = rss_anon_kb(ms->pid);

		if (v > ms->peak_kb)
			ms->peak_kb = v;
		ms->samples++;
		nanosleep(&ms1, NULL);
	}
	return NULL;
}

static int
mode_memory(int argc, char **argv)
{
	const char *schema,
			   *queue;
	long		njobs;
	PGconn	   *c;
	uint64_t	seed = rng_seed(7);
	char	   *json;
	const char *values[2];
	PGresult   *r;
	MemShared	ms;
	pthread_t	th;
	long		before,
				after;
	double		t0,
				t1;

	if (argc != 5)
		die("usage: memory SCHEMA QUEUE NJOBS");
	schema = argv[2];
	queue = argv[3];
	njobs = arg_long(argv[4], "NJOBS");
	c = db_connect();
	if (strcmp(schema, "jsonb") == 0)
	{
		/* the reference: only the conversion of the argument to jsonb */
		prepare(c, "enqueue_many",
				"SELECT jsonb_array_length($2::jsonb) WHERE $1::text IS NOT NULL", 2);
	}
	else
		prepare_queue(c, schema);

	/* warm up: the function's plans and caches are not what we measure */
	json = jobs_json(&seed, 10);
	values[0] = queue;
	values[1] = json;
	PQclear(exec_prepared(c, "enqueue_many", 2, values));
	free(json);

	json = jobs_json(&seed, njobs);
	values[1] = json;
	memset(&ms, 0, sizeof(ms));
	ms.pid = PQbackendPID(c);
	before = rss_anon_kb(ms.pid);
	if (before < 0)
		die("cannot read /proc/%d/status", ms.pid);
	ms.peak_kb = before;
	pthread_create(&th, NULL, mem_sampler, &ms);
	t0 = now();
	r = exec_prepared(c, "enqueue_many", 2, values);
	t1 = now();
	atomic_store(&ms.stop, 1);
	pthread_join(th, NULL);
	if (strtol(PQgetvalue(r, 0, 0), NULL, 10) != njobs)
		die("enqueue_many added %s jobs, not %ld", PQgetvalue(r, 0, 0), njobs);
	PQclear(r);
	after = rss_anon_kb(ms.pid);
	printf("{\"jobs\": %ld, \"json_bytes\": %zu, \"before_kb\": %ld, "
		   "\"peak_kb\": %ld, \"after_kb\": %ld, \"peak_delta_kb\": %ld, "
		   "\"samples\": %ld, \"seconds\": %.4f}\n",
		   njobs, strlen(json), before, ms.peak_kb, after,
		   ms.peak_kb - before, ms.samples, t1 - t0);
	free(json);
	PQfinish(c);
	return 0;
}

/* -------------------------------------------------------------------- copy */

static int
mode_copy(int argc, char **argv)
{
	const char *table;
	long		njobs;
	uint64_t	seed = rng_seed(9);
	size_t		size,
				len = 0;
	char	   *buf;
	char		u[40];
	char		sql[256];
	PGconn	   *c;
	PGresult   *r;
	double		t0,
				t1;

	if (argc != 4)
		die("usage: copy TABLE NJOBS");
	table = argv[2];
	njobs = arg_long(argv[3], "NJOBS");
	size = (size_t) njobs * 160 + 1;
	buf = malloc(size);
	if (buf == NULL)
		die("out of memory");
	/* the columns a waiting job has, as enqueue_many fills them */
	for (long i = 1; i <= njobs; i++)
	{
		uuid4(&seed, u);
		len += sprintf(buf + len,
					   "%ld\t2025-01-01 00:00:00+00\t2025-01-01 00:00:00+00\t1\t0\t0\t3\tw\tnoop\t{\"assetId\": \"%s\"}\n",
					   i, u);
	}
	c = db_connect();
	snprintf(sql, sizeof(sql),
			 "COPY %s (job_id, run_at, created_at, queue_id, priority, attempt,"
			 " max_attempts, state, job_name, payload) FROM STDIN", table);
	t0 = now();
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COPY_IN)
		die("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	for (size_t off = 0; off < len; off += 1 << 20)
	{
		size_t		n = len - off < (1 << 20) ? len - off : (1 << 20);

		if (PQputCopyData(c, buf + off, (int) n) != 1)
			die("COPY: %s", PQerrorMessage(c));
	}
	if (PQputCopyEnd(c, NULL) != 1)
		die("COPY: %s", PQerrorMessage(c));
	r = PQgetResult(c);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("COPY: %s", PQerrorMessage(c));
	PQclear(r);
	while ((r = PQgetResult(c)) != NULL)
		PQclear(r);
	t1 = now();
	printf("{\"rows\": %ld, \"seconds\": %.4f, \"rate\": %.1f}\n",
		   njobs, t1 - t0, njobs / (t1 - t0));
	free(buf);
	PQfinish(c);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		die("usage: driver fill|drain|latency|hold|sustained|memory|copy ...");
	if (strcmp(argv[1], "fill") == 0)
		return mode_fill(argc, argv);
	if (strcmp(argv[1], "drain") == 0)
		return mode_drain(argc, argv);
	if (strcmp(argv[1], "latency") == 0)
		return mode_latency(argc, argv);
	if (strcmp(argv[1], "hold") == 0)
		return mode_hold(argc, argv);
	if (strcmp(argv[1], "sustained") == 0)
		return mode_sustained(argc, argv);
	if (strcmp(argv[1], "memory") == 0)
		return mode_memory(argc, argv);
	if (strcmp(argv[1], "copy") == 0)
		return mode_copy(argc, argv);
	die("unknown mode %s", argv[1]);
	return 1;
}
