# Crashes around the background workers, library preloaded:
#
# 1. pg_ctl stop -m immediate in the middle of a drain of 20,000 jobs by 8
#    clients, then start: the leases the crash cut off come back when they
#    expire (the reaper, nobody calls reap()), and a second drain finishes the
#    work.  Each client logs every complete, with its result, in the
#    transaction of the complete, so the log has exactly what committed: every
#    job must end completed exactly once, none lost, and queue_counts exact.
#    The first drain cannot end before the crash: the complete of one job,
#    a tenth of the way in, cannot commit while the test holds a lock (a
#    gate), and the crash comes once a client waits there, in the middle of
#    that complete, while the others are at work.
# 2. The reaper itself is killed with kill -9: the postmaster restarts the
#    server (crash recovery), a launcher and a reaper start again, and an
#    expired lease is reclaimed.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $njobs = 20000;
my $nclients = 8;

# a drain that has not finished by then has hung: the test fails (this
# bounds the run and asserts nothing about speed)
my $deadline_s = $PostgreSQL::Test::Utils::timeout_default;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 200ms
# a background worker killed by a signal makes the postmaster restart the
# server (PostgreSQL::Test::Cluster turns this off)
restart_after_crash = on
# the clients' DO blocks would be logged once each; keep the log small
log_statement = none
log_line_prefix = '%m [%p] %b '
});
$node->start;

sub sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sql(qq{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
-- short leases, so that the ones a crash cuts off come back soon; attempts
-- to spare, so that a job that loses its lease more than once still ends
-- completed
SELECT immich_jobs.create_queue('drain', concurrency => 100,
								lease_timeout => '1 second', max_attempts => 100);
SELECT immich_jobs.enqueue_many('drain',
	(SELECT jsonb_agg(jsonb_build_object('name', 'j', 'payload',
										 jsonb_build_object('i', i)))
	   FROM generate_series(1, $njobs) i));
CREATE TABLE enqueued AS SELECT job_id FROM immich_jobs.job;
-- one row per complete a client ran: the job, the attempt, the result
CREATE TABLE done_log (
	job_id bigint NOT NULL,
	attempt integer NOT NULL,
	ok boolean NOT NULL,
	client integer NOT NULL);
});
is(sql('SELECT count(*) FROM enqueued'), $njobs, "$njobs jobs enqueued");

# The gate: the complete of the job a tenth of the way in commits only
# while the test does not hold this advisory lock (it holds it during the
# first drain; the crash takes it away).
my $gate_lock = 50;
my $gate_id = sql('SELECT min(job_id) FROM enqueued') + $njobs / 10;

# One client: claims up to 5 jobs (autocommit), then completes them one at
# a time, logging each complete in its own transaction; a complete of the
# gate's job that succeeded waits for the gate before its commit (it holds
# the job's row meanwhile: the reaper cannot reclaim it, nobody else can
# complete it).  When a claim comes back empty it backs off 5 ms, and it
# ends once no job is waiting, delayed or active.
sub client_sql
{
	my ($client) = @_;
	return qq{
DO \$client\$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '$deadline_s seconds';
	ids bigint[];
	tokens bigint[];
	attempts integer[];
	ok boolean;
BEGIN
	LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'client $client timed out';
		END IF;
		SELECT array_agg(c.job_id), array_agg(c.lease_token), array_agg(c.attempt)
		  INTO ids, tokens, attempts
		  FROM immich_jobs.claim('drain', 'client-$client', 5) c;
		COMMIT;
		IF ids IS NULL THEN
			EXIT WHEN NOT EXISTS (SELECT 1 FROM immich_jobs.job
								   WHERE state IN ('w', 'd', 'a'));
			PERFORM pg_sleep(0.005);
			CONTINUE;
		END IF;
		FOR k IN 1 .. array_length(ids, 1) LOOP
			ok := immich_jobs.complete(ids[k], tokens[k]);
			IF ok AND ids[k] = $gate_id THEN
				PERFORM pg_advisory_xact_lock_shared($gate_lock);
			END IF;
			INSERT INTO done_log VALUES (ids[k], attempts[k], ok, $client);
			COMMIT;
		END LOOP;
	END LOOP;
END
\$client\$;
};
}

# start the clients; returns their handles and outputs
sub start_clients
{
	my ($round) = @_;
	my @clients;
	for my $i (1 .. $nclients)
	{
		my $c = { id => $round * 100 + $i, out => '', err => '' };
		$c->{h} = IPC::Run::start(
			[
				$node->installed_command('psql'), '-XAtq',
				'-v', 'ON_ERROR_STOP=1',
				'-d', $node->connstr('postgres'),
				'-c', client_sql($c->{id})
			],
			'>', \$c->{out}, '2>', \$c->{err},
			IPC::Run::timeout($deadline_s + 60));
		push @clients, $c;
	}
	return @clients;
}

# wait for the clients; true if they all ended without error
sub finish_clients
{
	my ($expect_ok, @clients) = @_;
	my $all_ok = 1;
	for my $c (@clients)
	{
		my $ok = eval { $c->{h}->finish };
		if (!$ok)
		{
			$all_ok = 0;
			$c->{h}->kill_kill if $@;
			diag "client $c->{id} failed: "
			  . ($@ ? $@ : 'exit status ' . $c->{h}->result)
			  . "\n$c->{err}"
			  if $expect_ok;
		}
	}
	return $all_ok;
}

# The drain, cut off by an immediate shutdown once a client waits at the
# gate: by then about a tenth of the jobs are done, that client is in the
# middle of a complete (the crash will cut that lease off, whenever it
# comes), the other clients are at work wherever they are, and none of them
# can end: whatever the time the stop takes to come, the gate's job stays
# active until the crash.  (A count of jobs done polled for instead could
# be outrun: on a loaded machine the drain once finished between the poll
# and the stop.)  The poller holds the gate; its session dies in the crash,
# which opens it.
my $poller = $node->background_psql('postgres');
$poller->query_safe("SELECT pg_advisory_lock($gate_lock)");
my @clients = start_clients(1);
my $poll_until = time + $deadline_s;
my $at_gate;
while (time < $poll_until)
{
	# (16.2's BackgroundPsql leaves a newline after the result)
	$at_gate = ($poller->query_safe(qq{
SELECT count(*) > 0 FROM pg_catalog.pg_locks
 WHERE locktype = 'advisory' AND objid = $gate_lock AND NOT granted})
		  =~ s/\n+\z//r) eq 't';
	last if $at_gate;
	usleep(10_000);
}
ok($at_gate, 'the drain is under way: a client waits at the gate');
my $log_offset = -s $node->logfile;
$node->stop('immediate');
# (its session is gone: this ends its psql)
eval { $poller->quit };
ok(!finish_clients(0, @clients),
	'the clients lost their connections in the crash');
$node->start;
ok( $node->log_contains(
		qr/database system was not properly shut down; automatic recovery in progress/,
		$log_offset),
	'the server ran crash recovery');

# What the crash left: the jobs still to do, and among them those that
# were leased (attempt > 0): active at the crash, or already reclaimed by the
# reaper since the start (which keeps the attempt).
sql(q{
CREATE TABLE cut_off AS
  SELECT job_id, attempt FROM immich_jobs.job WHERE attempt > 0;
});
my ($done_before, $left, $cut_off) = split /\|/, sql(q{
SELECT (SELECT count(*) FROM done_log WHERE ok),
	   (SELECT count(*) FROM immich_jobs.job),
	   (SELECT count(*) FROM cut_off)});
note "at the crash: $done_before jobs completed, $left left, "
  . "$cut_off leases cut off";
cmp_ok($left, '>', 0, 'the crash came in the middle of the drain');
cmp_ok($cut_off, '>', 0,
	'the crash cut off leases (else this test would show nothing)');
is($done_before + $left, $njobs,
	'no job was lost: completed (as logged) + left = all');
# one snapshot; a reclaim moves jobs from active to waiting meanwhile,
# which changes neither sum
is( sql(q{
SELECT completed = (SELECT count(*) FROM done_log WHERE ok),
	   active + waiting + delayed + failed = (SELECT count(*) FROM immich_jobs.job),
	   failed
  FROM immich_jobs.queue_counts WHERE queue_name = 'drain'}),
	't|t|0',
	'after the crash, queue_counts agree with what committed');

# the second drain waits for the cut off leases to expire and be reclaimed
@clients = start_clients(2);
ok(finish_clients(1, @clients),
	"the second drain's $nclients clients ended without error or timeout");

ok( $node->log_contains(
		qr/immich_jobs reaper LOG:  immich_jobs reclaimed \d+ expired leases? in database "postgres"/,
		$log_offset),
	'after the restart, the reaper reclaimed the leases the crash cut off');
is( sql(q{
SELECT count(*) FILTER (WHERE ok), count(DISTINCT job_id) FILTER (WHERE ok)
  FROM done_log}),
	"$njobs|$njobs",
	"$njobs successful completes, of $njobs distinct jobs");
is( sql(q{
SELECT count(*) FROM enqueued e
 WHERE (SELECT count(*) FROM done_log d WHERE d.job_id = e.job_id AND d.ok) <> 1}),
	'0',
	'every job enqueued was completed exactly once');
is( sql(q{
SELECT count(*) FROM cut_off a
 WHERE (SELECT d.attempt FROM done_log d WHERE d.job_id = a.job_id AND d.ok)
	   > a.attempt}),
	$cut_off,
	'every job whose lease the crash cut off was completed on a later attempt');
is(sql('SELECT count(*) FROM immich_jobs.job'),
	'0', 'no job is left in the job table');
is( sql(q{
SELECT queue_name, paused, concurrency, active, waiting, delayed, failed, completed
  FROM immich_jobs.queue_counts}),
	"drain|f|100|0|0|0|0|$njobs",
	"queue_counts: $njobs completed, nothing else");

#
# kill -9 of the reaper
#
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type IN ('immich_jobs launcher', 'immich_jobs reaper')}, '2'),
	'a launcher and a reaper run');
my $old_pids = sql(q{
SELECT string_agg(pid::text, ',') FROM pg_stat_activity
 WHERE backend_type IN ('immich_jobs launcher', 'immich_jobs reaper')});
my $reaper_pid = sql(q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = 'postgres'});

$log_offset = -s $node->logfile;
ok(kill('KILL', $reaper_pid), 'kill -9 of the reaper');
$node->wait_for_log(
	qr/background worker "immich_jobs reaper" \(PID $reaper_pid\) was terminated by signal 9/,
	$log_offset);
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
$node->wait_for_log(qr/database system is ready to accept connections/,
	$log_offset);
pass('the postmaster restarted the server after the reaper\'s crash');

ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FILTER (WHERE backend_type = 'immich_jobs launcher') || '|' ||
	   count(*) FILTER (WHERE backend_type = 'immich_jobs reaper'
						  AND datname = 'postgres')
  FROM pg_stat_activity
 WHERE pid <> ALL ('{$old_pids}'::int[])}, '1|1'),
	'a new launcher and a new reaper run');

# a new lease expires and is reclaimed
sql(q{
SELECT immich_jobs.create_queue('after', lease_timeout => '1 second');
SELECT immich_jobs.enqueue('after', 'j');
SELECT count(*) FROM immich_jobs.claim('after', 'w');
});
ok( $node->poll_query_until(
		'postgres', q{
SELECT state || '|' || attempt || '|' || last_error
  FROM immich_jobs.jobs WHERE queue_name = 'after'}, 'waiting|1|lease expired'),
	'reclaiming resumes: a lease taken after the crash is reclaimed');

$node->stop;

done_testing();
