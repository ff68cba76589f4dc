# Queues that shared memory does not know are loaded when first used.
#
# pg_restore runs CREATE EXTENSION, then its COPYs.  A reaper round (or any
# call) in between loads the new database with no queue; the restored queues
# then had no shared entry and were served from their rows, claims taking
# turns on the queue's row, until the server restarted.  Here the round in
# between is made certain by restoring the sections one at a time and
# calling reap() after the first.  Then a claim of a restored queue does not
# wait for another claim of it in progress (lock_timeout proves it: on the
# row-lock path the second claim waits for the first one's transaction),
# admission is exact against the restored active jobs, and the counts are
# those of the rows.
#
# A late loader does not load while a transaction that writes the
# extension's tables is in progress (a COPY of a parallel restore, or a
# function call): that keeps the loaded counts exact.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restore');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 100ms
});
$node->start;

# the source database: queues with jobs in every state
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('thumbs', concurrency => 3, max_attempts => 1);
SELECT immich_jobs.create_queue('faces', concurrency => 1);
SELECT immich_jobs.create_queue('other');
SELECT immich_jobs.enqueue('thumbs', 'j' || i) FROM generate_series(1, 20) i;
SELECT immich_jobs.enqueue('thumbs', 'later', run_at => now() + interval '1 day');
SELECT immich_jobs.enqueue('faces', 'f' || i) FROM generate_series(1, 5) i;
});
# one active job in thumbs, two completed, one failed
$node->safe_psql('src', q{
SELECT immich_jobs.complete(job_id, lease_token)
  FROM immich_jobs.claim('thumbs', 'w', 2);
SELECT immich_jobs.fail(job_id, lease_token, 'boom')
  FROM immich_jobs.claim('thumbs', 'w', 1);
SELECT count(*) FROM immich_jobs.claim('thumbs', 'w', 1);
});

my $dump = $node->basedir . '/src.dump';
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ],
	'pg_dump of the source database');

# restore: CREATE EXTENSION, then a call that loads the database (as a
# reaper round would), then the data
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok(
	[
		'pg_restore', '--section=pre-data', '-d',
		$node->connstr('dst'), $dump
	],
	'pg_restore: pre-data (CREATE EXTENSION)');
$node->safe_psql('dst', 'SELECT immich_jobs.reap()');
$node->command_ok(
	[
		'pg_restore', '--section=data', '--section=post-data',
		'-d', $node->connstr('dst'), $dump
	],
	'pg_restore: data and post-data');

my $counts_sql = q{
SELECT queue_name, waiting, delayed, active, failed, completed
  FROM immich_jobs.queue_counts ORDER BY queue_name};
# the same, counted from the rows
my $rows_sql = q{
SELECT q.queue_name,
	   count(*) FILTER (WHERE j.state = 'w'),
	   count(*) FILTER (WHERE j.state = 'd'),
	   count(*) FILTER (WHERE j.state = 'a'),
	   count(*) FILTER (WHERE j.state = 'f'),
	   q.completed_base + coalesce((SELECT sum(n) FROM immich_jobs.completed_log l
									WHERE l.queue_id = q.queue_id), 0)
  FROM immich_jobs.queue q LEFT JOIN immich_jobs.job j USING (queue_id)
 GROUP BY q.queue_id ORDER BY q.queue_name};

# From here on no reaper runs in dst: a late load does not wait for a
# transaction that writes the extension's tables (a reaper's round among
# them), it tries again later, and the checks below want it to happen at
# the first call.
$node->safe_psql('postgres', "ALTER SYSTEM SET immich_jobs.databases = 'src'");
$node->reload;
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = 'dst'}),
	'no reaper in dst');

# Jobs copied in by a transaction still in progress (as the COPYs of a
# parallel pg_restore may be) for a queue whose row is committed: nothing
# loads the queue while they are in progress, and once they commit it is
# loaded with them.
my $copy = $node->background_psql('dst');
$copy->query_safe('BEGIN');
$copy->query_safe(q{
INSERT INTO immich_jobs.job (job_id, run_at, created_at, queue_id, priority,
       attempt, max_attempts, state, job_name, payload, lease_token,
       lease_expires_at, started_at, worker_id)
SELECT 100000 + i, now(), now(), 1000, 0, CASE WHEN i = 1 THEN 1 ELSE 0 END, 3,
       CASE WHEN i = 1 THEN 'a' ELSE 'w' END, 'j', '{}',
       CASE WHEN i = 1 THEN 42 END,
       CASE WHEN i = 1 THEN now() + interval '1 hour' END,
       CASE WHEN i = 1 THEN now() END,
       CASE WHEN i = 1 THEN 'old' END
  FROM generate_series(1, 4) i});
$node->safe_psql('dst', q{
INSERT INTO immich_jobs.queue (queue_id, queue_name, concurrency, max_attempts,
       lease_timeout, retry_backoff)
OVERRIDING SYSTEM VALUE VALUES (1000, 'copied', 1, 3, '1 hour', '1 second')});
is($node->safe_psql('dst',
		q{SELECT waiting || ' ' || active FROM immich_jobs.queue_counts WHERE queue_name = 'copied'}),
	'0 0', 'counts while the copy is in progress: none of its jobs');
$copy->query_safe('COMMIT');
$copy->quit;
is($node->safe_psql('dst',
		q{SELECT waiting || ' ' || active FROM immich_jobs.queue_counts WHERE queue_name = 'copied'}),
	'3 1', 'after the copy commits: its jobs, counted');
is($node->safe_psql('dst',
		q{SELECT count(*) FROM immich_jobs.claim('copied', 'w', 5)}),
	'0', 'a claim is refused: the copied active job holds the only slot');

# A transaction changes a queue that has no entry yet ("faces": nothing has
# used it since the restore): a queue_counts meanwhile does not load the
# queue, and counts its rows.
my $writer = $node->background_psql('dst');
$writer->query_safe('BEGIN');
$writer->query_safe(q{SELECT immich_jobs.enqueue('faces', 'f6')});
is($node->safe_psql('dst',
		q{SELECT waiting FROM immich_jobs.queue_counts WHERE queue_name = 'faces'}),
	'5', 'counts meanwhile: the writer\'s job is not committed');

# a claim while the writer is in progress stays on the row path: it is
# admitted by the row (concurrency 1), and takes one job
is($node->safe_psql('dst',
		q{SELECT count(*) FROM immich_jobs.claim('faces', 'w', 5)}),
	'1', 'a claim of faces meanwhile is admitted by the queue\'s row');
$writer->query_safe('COMMIT');
$writer->quit;

my $untouched = "SELECT * FROM ($counts_sql) c WHERE queue_name NOT IN ('faces', 'copied')";
is($node->safe_psql('dst', $untouched),
	$node->safe_psql('src', $untouched),
	'restored counts are the source\'s');

# One claim in progress; another must not wait for it.  thumbs has
# concurrency 3 and one restored active job: the first claim takes one
# slot, the second may take the last one only.
my $first = $node->background_psql('dst');
$first->query_safe('BEGIN');
my $got = $first->query_safe(
	q{SELECT count(*) FROM immich_jobs.claim('thumbs', 'first', 1)});
$got =~ s/\n+\z//;    # 16.2's BackgroundPsql leaves a newline
is($got, '1', 'a claim of the restored queue, its transaction left open');

my ($ret, $stdout, $stderr) = $node->psql('dst', q{
SET lock_timeout = '10s';
SELECT count(*) FROM immich_jobs.claim('thumbs', 'second', 5);
});
is($ret, 0, 'a second claim does not wait for the first one\'s transaction')
  or diag($stderr);
is($stdout, '1',
	'it gets the last slot: the restored active job and the first claim count');
is($node->safe_psql('dst', q{
SET lock_timeout = '10s';
SELECT count(*) FROM immich_jobs.claim('thumbs', 'third', 5)}),
	'0', 'a third claim gets none (concurrency 3)');

$first->query_safe('COMMIT');
$first->quit;
is($node->safe_psql('dst', $counts_sql),
	$node->safe_psql('dst', $rows_sql),
	'after the claims, counts are those of the rows');

is($node->safe_psql('dst', $counts_sql),
	$node->safe_psql('dst', $rows_sql),
	'after the writer commits, counts are those of the rows');
is($node->safe_psql('dst',
		q{SELECT count(*) FROM immich_jobs.claim('faces', 'w', 5)}),
	'0', 'faces is full (concurrency 1)');
# now loaded: a claim of faces in progress does not make another wait
$first = $node->background_psql('dst');
$first->query_safe('BEGIN');
$first->query_safe(q{
SELECT immich_jobs.complete(job_id, lease_token)
  FROM immich_jobs.job WHERE state = 'a'
   AND queue_id = (SELECT queue_id FROM immich_jobs.queue WHERE queue_name = 'faces')});
($ret, $stdout, $stderr) = $node->psql('dst', q{
SET lock_timeout = '10s';
SELECT count(*) FROM immich_jobs.claim('faces', 'other', 5);
});
is($ret, 0, 'faces is loaded: a claim does not wait for a transaction in progress')
  or diag($stderr);
is($stdout, '0', 'and is refused: the completion is not committed yet');
$first->query_safe('COMMIT');
$first->quit;
is($node->safe_psql('dst',
		q{SELECT count(*) FROM immich_jobs.claim('faces', 'w', 5)}),
	'1', 'after the completion commits, the slot is free');
is($node->safe_psql('dst', $counts_sql),
	$node->safe_psql('dst', $rows_sql),
	'at the end, counts are those of the rows');

done_testing();
