# With the library preloaded, admission state and job counts live in shared
# memory, which a crash wipes out.  This test crashes the server (immediate
# shutdown, then crash recovery) and checks that both are rebuilt from the
# tables: queue_counts is the same as before, admission still counts the
# leases taken before the crash, and those leases still complete.  Then it
# checks that transactions which end without committing give back what they
# took: ROLLBACK, ROLLBACK TO SAVEPOINT, and a PREPARE TRANSACTION that is
# refused.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restart');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
max_prepared_transactions = 2
});
$node->start;

sub sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sub counts
{
	return sql(
		'SELECT queue_name, paused, concurrency, active, waiting, delayed, failed, completed
		   FROM immich_jobs.queue_counts ORDER BY queue_name');
}

# the jobs kept, per queue and state (a crash must not change the tables
# either)
sub states
{
	return sql(
		'SELECT queue_name, state, count(*) FROM immich_jobs.jobs
		  GROUP BY 1, 2 ORDER BY 1, 2');
}

# how many jobs a claim of up to $n gets, in a transaction rolled back
# afterwards (it shows the free slots and changes nothing)
sub probe
{
	my ($queue, $n) = @_;
	return sql(
		"BEGIN;
		 SELECT count(*) FROM immich_jobs.claim('$queue', 'probe', $n);
		 ROLLBACK;");
}

# stop the server without a shutdown checkpoint and start it again; it runs
# crash recovery, with empty shared memory
sub crash
{
	my $log_offset = -s $node->logfile;
	$node->stop('immediate');
	$node->start;
	ok( $node->log_contains(
			qr/database system was not properly shut down; automatic recovery in progress/,
			$log_offset),
		'the server ran crash recovery');
}

sql(q{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
});

# Queue "mixed": jobs in every state.  Claims take the highest priority
# first, so each step below enqueues the job it then claims at priority 10.
sql(q{
SELECT immich_jobs.create_queue('mixed', concurrency => 10);
-- waiting, and delayed until far in the future
SELECT immich_jobs.enqueue('mixed', 'w' || i) FROM generate_series(1, 3) i;
SELECT immich_jobs.enqueue('mixed', 'd' || i, run_at => now() + interval '1 day')
  FROM generate_series(1, 2) i;
-- failed: its only attempt fails
SELECT immich_jobs.enqueue('mixed', 'f1', priority => 10, max_attempts => 1);
SELECT immich_jobs.fail(job_id, lease_token, 'boom')
  FROM immich_jobs.claim('mixed', 'setup');
-- delayed again: a failure with attempts left, retried in an hour
SELECT immich_jobs.enqueue('mixed', 'r1', priority => 10);
SELECT immich_jobs.fail(job_id, lease_token, 'later', interval '1 hour')
  FROM immich_jobs.claim('mixed', 'setup');
-- completed: two folded into completed_base by reap(), one still in
-- completed_log
SELECT immich_jobs.enqueue('mixed', 'c' || i, priority => 10)
  FROM generate_series(1, 2) i;
SELECT immich_jobs.complete(job_id, lease_token)
  FROM immich_jobs.claim('mixed', 'setup', 2);
SELECT immich_jobs.reap();
SELECT immich_jobs.enqueue('mixed', 'c3', priority => 10);
SELECT immich_jobs.complete(job_id, lease_token)
  FROM immich_jobs.claim('mixed', 'setup');
-- cancelled: one while waiting, one while active
SELECT immich_jobs.cancel(immich_jobs.enqueue('mixed', 'x1', priority => 10));
SELECT immich_jobs.enqueue('mixed', 'x2', priority => 10);
SELECT immich_jobs.cancel(job_id) FROM immich_jobs.claim('mixed', 'setup');
-- active
SELECT immich_jobs.enqueue('mixed', 'a1', priority => 10);
CREATE TABLE lease AS
  SELECT 'mixed' AS queue_name, job_id, lease_token
    FROM immich_jobs.claim('mixed', 'before-crash');
});

# Queue "adm": concurrency 3, 2 jobs leased before the crash, 3 waiting.
# Queue "adm2": concurrency 2, 1 leased, 2 waiting; nothing touches it before
# the second crash, after which a claim is its first statement.
# Queue "idle": paused, with one waiting job.
sql(q{
SELECT immich_jobs.create_queue('adm', concurrency => 3);
SELECT immich_jobs.enqueue('adm', 'j' || i) FROM generate_series(1, 5) i;
INSERT INTO lease
  SELECT 'adm', job_id, lease_token
    FROM immich_jobs.claim('adm', 'before-crash', 2);
SELECT immich_jobs.create_queue('adm2', concurrency => 2);
SELECT immich_jobs.enqueue('adm2', 'j' || i) FROM generate_series(1, 3) i;
INSERT INTO lease
  SELECT 'adm2', job_id, lease_token
    FROM immich_jobs.claim('adm2', 'before-crash');
SELECT immich_jobs.create_queue('idle');
SELECT immich_jobs.enqueue('idle', 'j1');
SELECT immich_jobs.pause_queue('idle');
});

my $counts_before = counts();
is( $counts_before, q{adm|f|3|2|3|0|0|0
adm2|f|2|1|2|0|0|0
idle|t|1|0|1|0|0|0
mixed|f|10|1|3|3|1|3}, 'queue_counts before the crash');
my $states_before = states();
is( $states_before, q{adm|active|2
adm|waiting|3
adm2|active|1
adm2|waiting|2
idle|waiting|1
mixed|active|1
mixed|cancelled|2
mixed|delayed|3
mixed|failed|1
mixed|waiting|3}, 'jobs in every state before the crash');
is(probe('adm', 3), '1', 'before the crash, a claim on "adm" gets 1 job');

# crash: no shutdown checkpoint, shared memory gone
crash();

is(counts(), $counts_before,
	'queue_counts are the same after the crash (rebuilt from the tables)');
is(states(), $states_before, 'the jobs are the same after the crash');

is( sql(
		"SELECT count(*) FROM immich_jobs.claim('adm', 'after-crash', 3)"),
	'1',
	'admission is rebuilt: 2 leases from before the crash + 1 = concurrency 3'
);
is( sql(
		"SELECT count(*) FROM immich_jobs.claim('adm', 'after-crash', 3)"),
	'0', 'the queue is full');
is( sql(
		"SELECT array_agg(immich_jobs.complete(job_id, lease_token))
		   FROM lease WHERE queue_name IN ('adm', 'mixed')"),
	'{t,t,t}',
	'the leases taken before the crash complete with their tokens');
is( sql(
		"SELECT count(*) FROM immich_jobs.claim('adm', 'after-crash', 3)"),
	'2', 'their slots are free again: the last 2 waiting jobs are claimed');
is( counts(), q{adm|f|3|3|0|0|0|2
adm2|f|2|1|2|0|0|0
idle|t|1|0|1|0|0|0
mixed|f|10|0|3|3|1|4}, 'queue_counts after the completions');

# a second crash, after which a claim (not queue_counts) comes first
$counts_before = counts();
crash();

is( sql(
		"SELECT count(*) FROM immich_jobs.claim('adm2', 'after-crash', 2)"),
	'1',
	'a claim as the first statement after a crash sees the lease from before it'
);
is( counts(), q{adm|f|3|3|0|0|0|2
adm2|f|2|2|1|0|0|0
idle|t|1|0|1|0|0|0
mixed|f|10|0|3|3|1|4}, 'queue_counts after the second crash and that claim');
is( sql(
		"SELECT immich_jobs.complete(job_id, lease_token) FROM lease
		  WHERE queue_name = 'adm2'"),
	't', 'the lease on "adm2" from before both crashes completes');

# Transactions that do not commit.  Queue "tx": concurrency 2, 4 waiting.
sql(q{
SELECT immich_jobs.create_queue('tx', concurrency => 2);
SELECT immich_jobs.enqueue('tx', 'j' || i) FROM generate_series(1, 4) i;
});
$counts_before = counts();
$states_before = states();

# ROLLBACK of a transaction that enqueued and claimed
is( sql(q{
BEGIN;
SELECT immich_jobs.enqueue('tx', 'new', priority => 10) > 0;
SELECT string_agg(job_name, ',') FROM immich_jobs.claim('tx', 'rollback', 2);
ROLLBACK;
}),
	"t\nnew,j1",
	'a transaction enqueues a job and claims it with another');
is(counts(), $counts_before, 'after its ROLLBACK, queue_counts are unchanged');
is(states(), $states_before, 'after its ROLLBACK, the jobs are unchanged');
is(probe('tx', 2), '2', 'after its ROLLBACK, both slots are free');

# ROLLBACK TO SAVEPOINT of a subtransaction that claimed
is( sql(q{
BEGIN;
SAVEPOINT s;
SELECT count(*) FROM immich_jobs.claim('tx', 'savepoint', 1);
ROLLBACK TO SAVEPOINT s;
SELECT string_agg(job_name, ',') FROM immich_jobs.claim('tx', 'savepoint', 2);
COMMIT;
}),
	"1\nj1,j2",
	'after ROLLBACK TO SAVEPOINT, its slot and its job are free again');
is( counts(), q{adm|f|3|3|0|0|0|2
adm2|f|2|1|1|0|0|1
idle|t|1|0|1|0|0|0
mixed|f|10|0|3|3|1|4
tx|f|2|2|2|0|0|0}, 'queue_counts show just the 2 jobs claimed after it');
is(probe('tx', 2), '0', '"tx" is full');
is( sql(
		"SELECT sum(immich_jobs.complete(j.job_id, j.lease_token)::int)
		   FROM immich_jobs.job j
		   JOIN immich_jobs.queue q USING (queue_id)
		  WHERE q.queue_name = 'tx' AND j.state = 'a'"),
	'2', 'both of its jobs complete');

# PREPARE TRANSACTION after a claim is refused, and gives the slot back
$counts_before = counts();
$states_before = states();
my ($stdout, $stderr);
$node->psql(
	'postgres', q{
\set VERBOSITY verbose
BEGIN;
SELECT count(*) FROM immich_jobs.claim('tx', 'prepare', 2);
PREPARE TRANSACTION 'ij_prepare';
},
	on_error_stop => 0,
	stdout => \$stdout,
	stderr => \$stderr);
is($stdout, '2', 'a transaction claims 2 jobs, then tries to PREPARE');
like(
	$stderr,
	qr/ERROR:  0A000: cannot PREPARE a transaction that has locked or changed immich_jobs jobs/,
	'PREPARE TRANSACTION fails with SQLSTATE 0A000');
is(sql('SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'no transaction was prepared');
is(counts(), $counts_before,
	'after the refused PREPARE, queue_counts are unchanged');
is(states(), $states_before,
	'after the refused PREPARE, the jobs are unchanged');
is(probe('tx', 2), '2', 'after the refused PREPARE, both slots are free');

$node->stop;

done_testing();
