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
# A transaction that changes a queue without an entry holds the queue's load
# lock (ShareLock), and a late loader does not load while one is in
# progress: that keeps the loaded counts exact.
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

# A transaction changes a queue that has no entry yet ("faces": nothing has
# used it since the restore): it holds the queue's load lock, and a
# queue_counts meanwhile does not load the queue.
my $writer = $node->background_psql('dst');
$writer->query_safe('BEGIN');
$writer->query_safe(q{SELECT immich_jobs.enqueue('faces', 'f6')});
my $locks = $node->safe_psql('dst', q{
SELECT mode FROM pg_locks
 WHERE locktype = 'object' AND classid = 'immich_jobs.job'::regclass
   AND objid = (SELECT queue_id FROM immich_jobs.queue WHERE queue_name = 'faces')
   AND objsubid = 1 AND granted});
is($locks, 'ShareLock', 'the writer holds the queue\'s load lock');
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

my $untouched = "SELECT * FROM ($counts_sql) c WHERE queue_name <> 'faces'";
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
