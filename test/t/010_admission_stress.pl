# Admission under load: 16 concurrent workers drain 5,000 jobs from a queue
# with concurrency 3, in both modes (admission in shared memory with the
# library preloaded, row-lock admission without).  Each worker records, for
# every job it ran, an interval that lies inside the time the job was really
# active: it starts after the claim has committed and ends before the
# complete starts.  No more than 3 such intervals may ever overlap, and at
# least 2 must (or the test would not have shown concurrency at all).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $njobs = 5000;
my $nclients = 16;
my $concurrency = 3;
# How long each job's work takes: the worker holds its lease that long, so
# that the queue is full nearly all the time and a fourth admission would
# show up as a fourth overlapping interval.  (This is the workload, not a
# wait for a condition.)
my $work_s = 0.001;

# A worker that has not finished by then has hung or is starved: the test
# fails.  This bounds the run; it asserts nothing about speed.
my $deadline_s = $PostgreSQL::Test::Utils::timeout_default;

# One worker: a DO block that commits between its steps.  claim, COMMIT; if a
# job came: t_start, the job's work, COMMIT, t_end, then complete and log in
# one transaction.
# An empty claim (no job, or no slot) is followed by a 1 ms backoff before
# the next poll, and ends the worker once no job is waiting or active.
sub worker_sql
{
	my ($client) = @_;
	return qq{
DO \$worker\$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '$deadline_s seconds';
	r record;
	t_start timestamptz;
	t_end timestamptz;
	ok boolean;
BEGIN
	LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'worker $client timed out';
		END IF;
		SELECT c.job_id, c.lease_token INTO r
		  FROM immich_jobs.claim('stress', 'worker-$client', max_jobs => 1) c;
		IF FOUND THEN
			COMMIT;
			t_start := clock_timestamp();
			PERFORM pg_sleep($work_s);
			COMMIT;
			t_end := clock_timestamp();
			ok := immich_jobs.complete(r.job_id, r.lease_token);
			INSERT INTO stress_log (job_id, t_start, t_end, completed, client)
			VALUES (r.job_id, t_start, t_end, ok, $client);
			COMMIT;
		ELSE
			COMMIT;
			EXIT WHEN NOT EXISTS (SELECT 1 FROM immich_jobs.job
								   WHERE state IN ('w', 'a'));
			PERFORM pg_sleep(0.001);
		END IF;
	END LOOP;
END
\$worker\$;
};
}

sub run_mode
{
	my ($mode) = @_;

	my $node = PostgreSQL::Test::Cluster->new("stress_$mode");
	$node->init;
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'immich_jobs'")
	  if $mode eq 'preload';
	# the workers' DO blocks are logged once each; keep the log small
	$node->append_conf('postgresql.conf', "log_statement = none");
	$node->start;

	$node->safe_psql(
		'postgres', qq{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('stress', concurrency => $concurrency);
CREATE TABLE stress_log (
	job_id bigint NOT NULL,
	t_start timestamptz NOT NULL,
	t_end timestamptz NOT NULL,
	completed boolean,
	client integer NOT NULL);
});
	is( $node->safe_psql(
			'postgres', qq{
SELECT immich_jobs.enqueue_many('stress',
	(SELECT jsonb_agg(jsonb_build_object('name', 'noop',
										 'payload', jsonb_build_object('i', i)))
	   FROM generate_series(1, $njobs) i))}),
		$njobs,
		"$mode: $njobs jobs enqueued");

	# start every worker, then wait for all of them
	my @h;
	my (@out, @err);
	my $psql = $node->installed_command('psql');
	for my $i (1 .. $nclients)
	{
		$out[$i] = '';
		$err[$i] = '';
		push @h,
		  IPC::Run::start(
			[
				$psql, '-XAtq', '-v', 'ON_ERROR_STOP=1',
				'-d', $node->connstr('postgres'),
				'-c', worker_sql($i)
			],
			'>', \$out[$i], '2>', \$err[$i],
			IPC::Run::timeout($deadline_s + 60));
	}
	my $all_ok = 1;
	for my $i (1 .. $nclients)
	{
		my $ok = eval { $h[ $i - 1 ]->finish };
		if (!$ok)
		{
			$all_ok = 0;
			$h[ $i - 1 ]->kill_kill if $@;
			diag "$mode: worker $i failed: "
			  . ($@ ? $@ : 'exit status ' . $h[ $i - 1 ]->result)
			  . "\n$err[$i]";
		}
	}
	ok($all_ok, "$mode: all $nclients workers ended without error or timeout");

	# the most intervals that overlap at any one time: +1 at each start, -1
	# at each end, ends first at equal times (touching intervals do not
	# overlap)
	my $sweep = q{
SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS running
  FROM (SELECT t_start AS t, 1 AS d FROM stress_log
		UNION ALL
		SELECT t_end, -1 FROM stress_log) e};
	my $max_overlap =
	  $node->safe_psql('postgres', "SELECT max(running) FROM ($sweep) s");
	note "$mode: at most $max_overlap jobs were seen active at once; "
	  . "moments at each level (level:moments): "
	  . $node->safe_psql(
		'postgres',
		"SELECT string_agg(running || ':' || n, ' ' ORDER BY running)
		   FROM (SELECT running, count(*) AS n FROM ($sweep) s GROUP BY 1) g");

	cmp_ok($max_overlap, '<=', $concurrency,
		"$mode: never more than $concurrency jobs active at once");
	cmp_ok($max_overlap, '>=', 2,
		"$mode: jobs did run concurrently (the check above could fail)");

	is( $node->safe_psql(
			'postgres', q{
SELECT count(*), count(DISTINCT job_id), bool_and(completed),
	   bool_and(t_end >= t_start), count(DISTINCT client) > 1
  FROM stress_log}),
		"$njobs|$njobs|t|t|t",
		"$mode: every job ran once and its complete returned true");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM immich_jobs.job'),
		'0', "$mode: no job is left in the job table");
	is( $node->safe_psql(
			'postgres',
			'SELECT queue_name, paused, concurrency, active, waiting, delayed, failed, completed
			   FROM immich_jobs.queue_counts'),
		"stress|f|$concurrency|0|0|0|0|$njobs",
		"$mode: queue_counts shows every job completed");

	$node->stop;
}

run_mode('preload');
run_mode('plain');

done_testing();
