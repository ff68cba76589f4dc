# pg_upgrade (same major to same major) of a cluster with the library
# preloaded and the extension installed in two databases, holding jobs in
# every state: waiting (several priorities), delayed (retrying, and far in
# the future), active with a lease that has expired and one that has not,
# failed, cancelled, dedup keys in both modes, a paused queue, a queue of
# concurrency 2, completions not yet folded into the queue rows.
#
# pg_upgrade starts both servers in binary-upgrade mode (-b), and the old
# one while pg_dump reads it; there the library must start no background
# worker (the IsBinaryUpgrade test in _PG_init): a reaper would reclaim the
# expired lease in the old cluster's files just before they are copied, or
# in the new cluster when pg_upgrade starts it after the copy, and fold the
# completions.  Both clusters serve every database (immich_jobs.databases
# = '*') with a 100 ms round while pg_upgrade runs, to give a reaper every
# chance to act.
#
# 1. The upgraded cluster, started with no database served (nothing runs
#    but this test's queries), has every row of immich_jobs.job, .queue and
#    .completed_log identical to the old cluster's, at the same place (ctid)
#    and from the same transaction (xmin), lease tokens included, and the
#    same sequences; the expired lease is still active, at attempt 1.
# 2. The log of the servers pg_upgrade ran (kept with --retain, written at
#    log_min_messages = debug1) registers and starts no immich_jobs worker.
# 3. queue_counts are exact and the same as before; the extension is still
#    at 1.2.
# 4. Served again, the reaper reclaims the expired lease on the upgraded
#    cluster; claims respect the concurrency and the pause; the lease taken
#    before the upgrade is completed with its old token; both dedup keys
#    still block; new lease tokens are above every token handed out before.

use strict;
use warnings;

use File::Find;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @dbs = ('jobs_a', 'jobs_b');

my $conf = q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 100ms
};

my $old = PostgreSQL::Test::Cluster->new('old');
$old->init;
# no reaper while the jobs are made: the expired lease must reach the upgrade
$old->append_conf('postgresql.conf', $conf . "immich_jobs.databases = ''\n");
$old->start;

sub sql
{
	my ($node, $db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

# Each database: three queues, and public.issued, every lease token handed
# out (so that the new ones can be compared with them).
for my $db (@dbs)
{
	sql($old, 'postgres', "CREATE DATABASE $db");
	sql($old, $db, qq{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
CREATE TABLE issued (job_id bigint, job_name text, lease_token bigint);
SELECT immich_jobs.create_queue('main', concurrency => 2, lease_timeout => '7 days',
								max_attempts => 3);
SELECT immich_jobs.create_queue('short', concurrency => 3, lease_timeout => '1 second',
								max_attempts => 3);
SELECT immich_jobs.create_queue('held', concurrency => 4);

-- 2 completed
SELECT immich_jobs.enqueue('main', n, jsonb_build_object('db', '$db', 'n', n))
  FROM unnest(ARRAY['done1', 'done2']) n;
INSERT INTO issued SELECT job_id, job_name, lease_token FROM immich_jobs.claim('main', 'old', 2);
SELECT immich_jobs.complete(job_id, lease_token) FROM issued WHERE job_name = 'done1';
SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token))
  FROM issued WHERE job_name = 'done2';

-- failed on its last attempt; the same with a key in mode 'kept'
SELECT immich_jobs.enqueue('main', 'failed', max_attempts => 1);
INSERT INTO issued SELECT job_id, job_name, lease_token FROM immich_jobs.claim('main', 'old');
SELECT immich_jobs.fail(job_id, lease_token, 'boom') FROM issued WHERE job_name = 'failed';
SELECT immich_jobs.enqueue('main', 'kept-failed', max_attempts => 1,
						   dedup_key => 'k-failed', dedup_mode => 'kept');
INSERT INTO issued SELECT job_id, job_name, lease_token FROM immich_jobs.claim('main', 'old');
SELECT immich_jobs.fail(job_id, lease_token, 'boom') FROM issued WHERE job_name = 'kept-failed';

-- delayed: a retry in an hour
SELECT immich_jobs.enqueue('main', 'retrying');
INSERT INTO issued SELECT job_id, job_name, lease_token FROM immich_jobs.claim('main', 'old');
SELECT immich_jobs.fail(job_id, lease_token, 'again', retry_in => '1 hour')
  FROM issued WHERE job_name = 'retrying';

-- cancelled
SELECT immich_jobs.cancel(immich_jobs.enqueue('main', 'cancelled'));

-- active, lease of 7 days
SELECT immich_jobs.enqueue('main', 'leased', priority => 10);
INSERT INTO issued SELECT job_id, job_name, lease_token FROM immich_jobs.claim('main', 'old');

-- delayed, far in the future; waiting, with priorities and both dedup modes
SELECT immich_jobs.enqueue('main', 'later', run_at => now() + interval '100 years');
SELECT immich_jobs.enqueue('main', 'w1', '{"a": [1, 2]}');
SELECT immich_jobs.enqueue('main', 'w2', priority => 5);
SELECT immich_jobs.enqueue('main', 'w3', priority => -1);
SELECT immich_jobs.enqueue('main', 'unstarted', dedup_key => 'k-unstarted');
SELECT immich_jobs.enqueue('main', 'kept-waiting', dedup_key => 'k-kept', dedup_mode => 'kept');

-- a lease of 1 second, which expires before the upgrade
SELECT immich_jobs.enqueue('short', 'expired');
INSERT INTO issued SELECT job_id, job_name, lease_token FROM immich_jobs.claim('short', 'old');
SELECT immich_jobs.enqueue('short', 'short-waiting');

-- a paused queue
SELECT immich_jobs.enqueue('held', n) FROM unnest(ARRAY['h1', 'h2']) n;
SELECT immich_jobs.pause_queue('held');
});
}

# the leases of queue "short" have expired: a reaper would reclaim them
for my $db (@dbs)
{
	ok( $old->poll_query_until($db, q{
SELECT count(*) = 1 AND bool_and(j.lease_expires_at < now())
  FROM immich_jobs.job j JOIN immich_jobs.queue q USING (queue_id)
 WHERE q.queue_name = 'short' AND j.state = 'a'}),
		"$db: the lease of queue short has expired");
}

# What must come through the upgrade, exactly.  Rows with their place and
# the transaction that wrote them: a row that anything updated would differ.
my $state_sql = q{
SELECT 'job ' || j.ctid || ' ' || j.xmin || ' ' || j::text
  FROM (SELECT ctid, xmin, * FROM immich_jobs.job) j
UNION ALL
SELECT 'queue ' || q.ctid || ' ' || q.xmin || ' ' || q::text
  FROM (SELECT ctid, xmin, * FROM immich_jobs.queue) q
UNION ALL
SELECT 'completed_log ' || l.ctid || ' ' || l.xmin || ' ' || l::text
  FROM (SELECT ctid, xmin, * FROM immich_jobs.completed_log) l
UNION ALL
SELECT 'seq ' || s || ' ' || last_value || ' ' || is_called
  FROM (SELECT 'job_id_seq' s, last_value, is_called FROM immich_jobs.job_id_seq
		UNION ALL
		SELECT 'lease_token_seq', last_value, is_called FROM immich_jobs.lease_token_seq
		UNION ALL
		SELECT 'queue_queue_id_seq', last_value, is_called
		  FROM immich_jobs.queue_queue_id_seq) s
UNION ALL
SELECT 'issued ' || i::text FROM issued i
UNION ALL
SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
 WHERE extname = 'immich_jobs'
ORDER BY 1};

my $counts_sql = q{
SELECT string_agg(queue_name || ': paused=' || paused || ' concurrency=' || concurrency
				  || ' active=' || active || ' waiting=' || waiting
				  || ' delayed=' || delayed || ' failed=' || failed
				  || ' completed=' || completed, E'\n' ORDER BY queue_name)
  FROM immich_jobs.queue_counts};

my $expected_counts = join("\n",
	'held: paused=true concurrency=4 active=0 waiting=2 delayed=0 failed=0 completed=0',
	'main: paused=false concurrency=2 active=1 waiting=5 delayed=2 failed=2 completed=2',
	'short: paused=false concurrency=3 active=1 waiting=1 delayed=0 failed=0 completed=0');

# the expired lease, as the reaper would see it
my $expired_sql = q{
SELECT j.state::text || ' attempt=' || j.attempt || ' token=' || coalesce(j.lease_token::text, 'none')
	   || ' error=' || coalesce(j.last_error, 'none')
  FROM immich_jobs.job j WHERE j.job_name = 'expired'};

my (%before, %counts_before, %expired_before);
for my $db (@dbs)
{
	$counts_before{$db} = sql($old, $db, $counts_sql);
	is($counts_before{$db}, $expected_counts, "$db: queue_counts before the upgrade");
	$before{$db} = sql($old, $db, $state_sql);
	$expired_before{$db} = sql($old, $db, $expired_sql);
	like($expired_before{$db}, qr/^a attempt=1 token=\d+ error=none$/,
		"$db: before the upgrade, the expired lease is active");
	is(scalar(() = $before{$db} =~ /^job /mg), 15, "$db: 15 jobs kept");
	is(scalar(() = $before{$db} =~ /^completed_log /mg), 2,
		"$db: 2 completions not folded into the queue rows");
}
$old->stop;

# While pg_upgrade runs, both clusters would serve every database with a
# 100 ms round, and log every background worker registered and started.
# (Later lines of postgresql.conf win.)
my $upgrade_conf = q{
immich_jobs.databases = '*'
log_min_messages = debug1
log_statement = none
};
$old->append_conf('postgresql.conf', $upgrade_conf);

my $new = PostgreSQL::Test::Cluster->new('new');
$new->init;
$new->append_conf('postgresql.conf', $conf . $upgrade_conf);

# same major: the binaries of this installation (first in PATH)
my ($bindir, $version, $stderr);
($bindir, $stderr) = run_command([ 'pg_config', '--bindir' ]);
chomp $bindir;
($version, $stderr) = run_command([ 'pg_config', '--version' ]);
my ($major) = $version =~ /PostgreSQL (\d+)/;
note "pg_upgrade of PostgreSQL $major, binaries in $bindir";

# pg_upgrade writes its files (and, before 15, its logs) in the current
# directory
my $workdir = PostgreSQL::Test::Utils::tempdir;
chdir $workdir or die "chdir $workdir: $!";
my $t0 = time;
command_ok(
	[
		'pg_upgrade', ($major >= 15 ? ('--no-sync') : ()),
		'--retain',
		'-d', $old->data_dir,
		'-D', $new->data_dir,
		'-b', $bindir,
		'-B', $bindir,
		'-s', $new->host,
		'-p', $old->port,
		'-P', $new->port,
	],
	'pg_upgrade');
note 'pg_upgrade took ' . (time - $t0) . ' s';

# 2. the servers' log: since 15 under the new data directory, before in the
# current directory
my @logs;
find(
	sub { push @logs, $File::Find::name if $_ eq 'pg_upgrade_server.log' },
	grep { -d } ($workdir, $new->data_dir . '/pg_upgrade_output.d'));
is(scalar(@logs), 1, 'pg_upgrade kept the log of its servers');
my $log = @logs ? slurp_file($logs[0]) : '';
my $starts = () = $log =~ /database system is ready to accept connections/g;
cmp_ok($starts, '>=', 2, "the log has the old server and the new one ($starts starts)");
my $loads = () = $log =~ /DEBUG:  loaded library "immich_jobs"/g;
is($loads, $starts, 'each of these servers loaded the library (the log has DEBUG1 lines)');
my @workers = grep { /immich_jobs (launcher|reaper)|immich_jobs reclaimed/ } split /\n/, $log;
is(join("\n", @workers), '',
	'no immich_jobs worker was registered or started, nothing was reclaimed');

# 1. the upgraded cluster, started with no database served
$new->append_conf('postgresql.conf', q{
immich_jobs.databases = ''
log_min_messages = warning
});
$new->start;
ok( $new->poll_query_until('postgres', q{
SELECT count(*) FILTER (WHERE backend_type = 'immich_jobs launcher') || '|' ||
	   count(*) FILTER (WHERE backend_type = 'immich_jobs reaper')
  FROM pg_stat_activity}, '1|0'),
	'the upgraded server runs its launcher, and no reaper while no database is served');

for my $db (@dbs)
{
	my $after = sql($new, $db, $state_sql);
	is($after, $before{$db},
		"$db: every job, queue, completion, sequence and token is as before the upgrade");
	is(sql($new, $db, $expired_sql), $expired_before{$db},
		"$db: the expired lease was not reclaimed during the upgrade");
	# 3.
	is(sql($new, $db, $counts_sql), $counts_before{$db}, "$db: queue_counts as before");
	is(sql($new, $db,
		q{SELECT extversion FROM pg_extension WHERE extname = 'immich_jobs'}),
		'1.2', "$db: the extension is still at 1.2");
}

# 4. the reaper on the upgraded cluster
$new->append_conf('postgresql.conf', "immich_jobs.databases = '*'\n");
$new->reload;
for my $db (@dbs)
{
	ok( $new->poll_query_until($db, $expired_sql,
			'w attempt=1 token=none error=lease expired'),
		"$db: served again, the reaper reclaims the expired lease");
	# the same round folded the completions into the queue rows
	is( sql($new, $db, q{
SELECT (SELECT count(*) FROM immich_jobs.completed_log) || ' '
	   || (SELECT completed_base FROM immich_jobs.queue WHERE queue_name = 'main')}),
		'0 2', "$db: and folds the completions logged before the upgrade");
	is(sql($new, $db, $counts_sql), join("\n",
		'held: paused=true concurrency=4 active=0 waiting=2 delayed=0 failed=0 completed=0',
		'main: paused=false concurrency=2 active=1 waiting=5 delayed=2 failed=2 completed=2',
		'short: paused=false concurrency=3 active=0 waiting=2 delayed=0 failed=0 completed=0'),
		"$db: queue_counts exact after the reaper's round");

	sql($new, $db, 'CREATE TABLE issued_after (LIKE issued)');
	# concurrency 2 with one slot taken: one job, the best waiting one
	is( sql($new, $db, q{
WITH c AS (INSERT INTO issued_after
		   SELECT job_id, job_name, lease_token FROM immich_jobs.claim('main', 'new', 10)
		   RETURNING job_name)
SELECT string_agg(job_name, ',') FROM c}),
		'w2', "$db: a claim gets one job, the best, within concurrency 2");
	is( sql($new, $db, q{
SELECT immich_jobs.complete(job_id, lease_token) FROM issued WHERE job_name = 'leased'}),
		't', "$db: the lease taken before the upgrade is completed with its token");
	is( sql($new, $db, q{
SELECT immich_jobs.complete(job_id, lease_token) FROM issued_after WHERE job_name = 'w2'}),
		't', "$db: the new lease is completed");
	# leases of 7 days from now on, so that the reaper leaves these alone
	sql($new, $db, q{SELECT immich_jobs.alter_queue('short', lease_timeout => '7 days')});
	is( sql($new, $db, q{
WITH c AS (INSERT INTO issued_after
		   SELECT job_id, job_name, lease_token FROM immich_jobs.claim('short', 'new', 10)
		   RETURNING job_name)
SELECT string_agg(job_name, ',' ORDER BY job_name) FROM c}),
		'expired,short-waiting', "$db: the reclaimed job is claimed again");
	is( sql($new, $db, q{SELECT attempt FROM immich_jobs.job WHERE job_name = 'expired'}),
		'2', "$db: at its second attempt");
	is( sql($new, $db, q{SELECT count(*) FROM immich_jobs.claim('held', 'new', 10)}),
		'0', "$db: the paused queue is still paused");
	sql($new, $db, q{SELECT immich_jobs.resume_queue('held')});
	is( sql($new, $db, q{
WITH c AS (INSERT INTO issued_after
		   SELECT job_id, job_name, lease_token FROM immich_jobs.claim('held', 'new', 10)
		   RETURNING job_name)
SELECT string_agg(job_name, ',' ORDER BY job_name) FROM c}),
		'h1,h2', "$db: resumed, it hands out its jobs");
	is( sql($new, $db, q{
SELECT immich_jobs.enqueue('main', 'unstarted', dedup_key => 'k-unstarted')
	 = (SELECT job_id FROM immich_jobs.job WHERE job_name = 'unstarted')
   AND immich_jobs.enqueue('main', 'kept-waiting', dedup_key => 'k-kept', dedup_mode => 'kept')
	 = (SELECT job_id FROM immich_jobs.job WHERE job_name = 'kept-waiting')
   AND immich_jobs.enqueue('main', 'kept-failed', dedup_key => 'k-failed', dedup_mode => 'kept')
	 = (SELECT job_id FROM immich_jobs.job WHERE job_name = 'kept-failed')}),
		't', "$db: the dedup keys of both modes still block");
	is( sql($new, $db, q{
SELECT count(*) || ' ' || count(*) FILTER (WHERE n.lease_token <= (SELECT max(lease_token) FROM issued))
  FROM issued_after n}),
		'5 0', "$db: the 5 new lease tokens are above every token handed out before");
	is(sql($new, $db, $counts_sql), join("\n",
		'held: paused=false concurrency=4 active=2 waiting=0 delayed=0 failed=0 completed=0',
		'main: paused=false concurrency=2 active=0 waiting=4 delayed=2 failed=2 completed=4',
		'short: paused=false concurrency=3 active=2 waiting=0 delayed=0 failed=0 completed=0'),
		"$db: queue_counts exact at the end");
}

$new->stop;
done_testing();
