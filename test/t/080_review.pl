# What review found and commit db1144b fixed, where the test needs a server
# of its own or the background workers (library preloaded).  The parts,
# with the review's item numbers:
#
# 1. (item 2) Counters loaded after a restart by a REPEATABLE READ
#    transaction whose snapshot predates a pause_queue() must not undo the
#    pause in shared memory: every claim on the paused queue gets nothing.
# 2. (item 10) A non-owner's DROP DATABASE / ALTER DATABASE ... RENAME fails
#    with "must be owner" and leaves the database's reaper running (the same
#    process).
# 3. (item 11) A database marked invalid (as an interrupted DROP DATABASE
#    leaves it) gets no reaper, and the log has no "cannot connect to
#    invalid database" lines.
# 4. (item 4) A worker that LISTENs, whose claim came back empty because
#    another claim held the only job, is woken by the reaper when that other
#    claim rolls back.
# 5. (item 5) pg_terminate_backend() of the launcher: the postmaster starts
#    it again; the new launcher starts no second reaper for a database (the
#    running ones go on), and DROP DATABASE of a served database then
#    succeeds (with a second reaper connected it would fail).  The same when
#    the launcher is terminated while it waits for a lock on pg_database.
#
# The other items are pg_regress (enqueue_many_bulk) and isolation tests
# (bulk-reindex, rr-claim-cursor, recreate-rollback, enqueue-drop).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Time::HiRes qw(time usleep);

# a background session's result, without the trailing newline that 16.2's
# BackgroundPsql::query leaves (fixed in 16.3)
sub bq
{
	my ($session, $sql) = @_;
	my $out = $session->query_safe($sql);
	$out =~ s/\n+\z//;
	return $out;
}

my $node = PostgreSQL::Test::Cluster->new('review');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 200ms
# no reaper until part 2: part 1 needs counters that nobody has loaded
immich_jobs.databases = ''
log_line_prefix = '%m [%p] %b '
});
$node->start;

sub sql
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

# the reapers, "datname=pid" sorted by database, leaving out the marker
# databases of launcher_round()
my $reapers_query = q{
SELECT coalesce(string_agg(datname || '=' || pid, ' ' ORDER BY datname, pid), '')
  FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname NOT LIKE 'mark%'};

sub launcher_pid
{
	return sql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'immich_jobs launcher'"
	);
}

# wait until exactly one reaper serves $db and has done a round there (its
# query_start is the start of its last round); returns its pid
sub wait_served
{
	my ($db, $what) = @_;
	ok( $node->poll_query_until(
			'postgres', qq{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'
   AND query_start IS NOT NULL}, '1'),
		"$what: a reaper serves \"$db\"");
	return sql('postgres', qq{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'});
}

# Wait until the launcher has run a round that started after this call:
# only a launcher round starts the reaper of a new database with the
# extension.  Then, a few rounds of that reaper later, anything the launcher
# started in that round or before (a second reaper, one that failed to
# connect) has had time to show.
my $nmarks = 0;

sub launcher_round
{
	my ($what) = @_;
	my $db = 'mark' . ++$nmarks;
	sql('postgres', "CREATE DATABASE $db");
	sql($db, 'SET client_min_messages = warning; CREATE EXTENSION immich_jobs');
	wait_served($db, "$what (marker database)");
	for my $round (1 .. 3)
	{
		my $start = sql('postgres', qq{
SELECT query_start FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'});
		$node->poll_query_until(
			'postgres', qq{
SELECT query_start > '$start' FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'})
		  or die "the reaper of $db does no more rounds";
	}
	return;
}

#
# 1. Counters loaded with an old snapshot after a restart.
#
# Nobody has loaded this database's counters since the restart (no reaper:
# immich_jobs.databases = '').  A REPEATABLE READ transaction takes its
# snapshot; pause_queue('p') commits; then the old transaction reads
# queue_counts, which loads the counters, with a snapshot in which 'p' is
# not paused.  pause_queue loads them first, so that its pause reaches shared
# memory when it commits, and the later load does not undo it.  (It did not:
# the second claim in a session, which reads the settings from shared
# memory, got a job from the paused queue.)
#
sql('postgres', q{
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('p', concurrency => 3);
SELECT immich_jobs.enqueue_many('p', '[{"name": "a"}, {"name": "b"}, {"name": "c"}]');
});
$node->restart;

my $rr = $node->background_psql('postgres');
$rr->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$rr->query_safe('SELECT 1');
sql('postgres', "SELECT immich_jobs.pause_queue('p')");
is( bq($rr, q{
SELECT waiting FROM immich_jobs.queue_counts WHERE queue_name = 'p'}),
	'3',
	'the REPEATABLE READ transaction reads queue_counts after the pause committed');
$rr->query_safe('COMMIT');
is( sql('postgres', q{
SELECT count(*) FROM immich_jobs.claim('p', 'w1');
SELECT count(*) FROM immich_jobs.claim('p', 'w1');
SELECT count(*) FROM immich_jobs.claim('p', 'w1', 3);}),
	"0\n0\n0",
	'after the restart, every claim on the paused queue gets nothing');
is( bq($rr, q{
SELECT count(*) FROM immich_jobs.claim('p', 'w2');
SELECT count(*) FROM immich_jobs.claim('p', 'w2');}),
	"0\n0",
	'in the session that loaded the counters too');
$rr->quit;
is( sql('postgres', q{
SELECT paused, active, waiting FROM immich_jobs.queue_counts
 WHERE queue_name = 'p'}),
	't|0|3', 'queue_counts: paused, nothing active, 3 waiting');
sql('postgres', "SELECT immich_jobs.resume_queue('p')");
is( sql('postgres', q{
SELECT count(*) FROM immich_jobs.claim('p', 'w3');
SELECT count(*) FROM immich_jobs.claim('p', 'w3', 3);}),
	"1\n2", 'once resumed, the claims get the 3 jobs');

# From here on the background workers serve every database.
$node->append_conf('postgresql.conf', "immich_jobs.databases = '*'");
$node->reload;
wait_served('postgres', 'after the reload');

#
# 2. Only the owner of a database stops its reaper by running DDL on it.
#
sql('postgres', q{
CREATE DATABASE r10;
CREATE ROLE mallory LOGIN;
});
sql('r10', 'CREATE EXTENSION immich_jobs');
my $r10_reaper = wait_served('r10', 'before the non-owner\'s DDL');
my ($ret, $stdout, $stderr) = $node->psql(
	'postgres', 'DROP DATABASE r10',
	extra_params => [ '-U', 'mallory' ]);
like(
	$stderr,
	qr/ERROR:  must be owner of database r10/,
	'a non-owner\'s DROP DATABASE fails with "must be owner"');
is( sql('postgres', q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = 'r10'}),
	$r10_reaper, 'the reaper of r10 still runs: the same process');
($ret, $stdout, $stderr) = $node->psql(
	'postgres', 'ALTER DATABASE r10 RENAME TO r10x',
	extra_params => [ '-U', 'mallory' ]);
like(
	$stderr,
	qr/ERROR:  must be owner of database r10/,
	'a non-owner\'s ALTER DATABASE ... RENAME fails with "must be owner"');
is( sql('postgres', q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = 'r10'}),
	$r10_reaper, 'the reaper of r10 still runs: the same process');

#
# 3. An invalid database gets no reaper.
#
# Created refusing connections (not served), then marked invalid, as a DROP
# DATABASE that was interrupted leaves it, and allowing connections, in one
# update: no launcher round ever sees it valid.
#
sql('postgres', 'CREATE DATABASE r11 WITH ALLOW_CONNECTIONS false');
sql('postgres', q{
UPDATE pg_database SET datconnlimit = -2, datallowconn = true
 WHERE datname = 'r11'});
launcher_round('after the database was marked invalid');
is( sql('postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE datname = 'r11'}),
	'0', 'the invalid database has no reaper');
ok( !$node->log_contains(qr/cannot connect to invalid database "r11"/),
	'the log has no "cannot connect to invalid database" line');
sql('postgres', 'DROP DATABASE r11');

#
# 4. A claim that aborts, and a worker that waits.
#
# s1 claims the only job (open transaction); s2, which LISTENs, claims and
# finds nothing: it waits for a NOTIFY.  s1 rolls back: the job is waiting
# again, but nobody would tell s2.  The reaper does, within a round or two
# (it notifies the queues where a claim came back empty while jobs wait).
#
sql('postgres', q{
SELECT immich_jobs.create_queue('stranded', concurrency => 2);
SELECT immich_jobs.enqueue('stranded', 'j');
});
my $s1 = $node->background_psql('postgres');
my $s2 = $node->background_psql('postgres');
$s2->query_safe('LISTEN immich_jobs');
$s1->query_safe('BEGIN');
is( bq($s1, q{SELECT count(*) FROM immich_jobs.claim('stranded', 's1')}),
	'1', 's1 claims the job in an open transaction');
like(
	bq($s2, q{SELECT count(*) FROM immich_jobs.claim('stranded', 's2')}),
	qr/^0$/m,
	's2 finds nothing: it waits for a notification');
$s1->query_safe('ROLLBACK');
my $rolled_back = time;

# s2 runs an empty query every 10 ms (psql prints the notifications received
# after each command) until the one for "stranded" has come
my ($sender, $woken);
my $seen = '';
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	$seen .= $s2->query_safe('SELECT');
	if ($seen =~
		/Asynchronous notification "immich_jobs" with payload "stranded" received from server process with PID (\d+)/
	  )
	{
		$sender = $1;
		$woken = time;
		last;
	}
	usleep(10_000);
}
ok(defined $sender,
	'after the rollback, s2 gets NOTIFY immich_jobs, \'stranded\'');
note sprintf('s2 was woken %d ms after the rollback',
	(($woken // time) - $rolled_back) * 1000);
is( $sender // '',
	sql('postgres', q{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = 'postgres'}),
	'the reaper sent it');
like(
	$s2->query_safe(q{SELECT job_name FROM immich_jobs.claim('stranded', 's2')}),
	qr/^j$/m,
	'woken, s2 claims the job');
$s1->quit;
$s2->quit;

#
# 5. The launcher is terminated.
#
# a. Between rounds (where it spends its time): it exits with code 1, so the
#    postmaster starts it again (bgw_restart_time, 5 s).  The new launcher
#    did not start the reapers that run, and must not start another one.
#
my $reapers = sql('postgres', $reapers_query);
like($reapers, qr/^postgres=\d+ r10=\d+$/,
	'one reaper each for postgres and r10');
my $launcher = launcher_pid();
sql('postgres', "SELECT pg_terminate_backend($launcher)");
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs launcher' AND pid <> $launcher}, '1'),
	'after pg_terminate_backend(), a new launcher runs');
launcher_round('the new launcher');
is(sql('postgres', $reapers_query),
	$reapers, 'still one reaper per database: the same ones');
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE r10');
is($ret, 0, 'DROP DATABASE of a served database succeeds')
  or diag $stderr;

# b. While it waits for a lock on pg_database (in a round): it dies as any
#    backend would, and is started again.  While the lock is held nobody can
#    connect, so the session holding it watches the launcher through
#    pg_stat_get_activity(), which does not read pg_database (clearing the
#    transaction's snapshot of the activity before each look).
sql('postgres', 'CREATE DATABASE r12');
sql('r12', 'CREATE EXTENSION immich_jobs');
wait_served('r12', 'before the launcher is blocked');
$reapers = sql('postgres', $reapers_query);
like($reapers, qr/^postgres=\d+ r12=\d+$/,
	'one reaper each for postgres and r12');
$launcher = launcher_pid();
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK pg_database IN ACCESS EXCLUSIVE MODE');
my $state = '';
$deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	$locker->query_safe('SELECT pg_stat_clear_snapshot()');
	$state = bq($locker, 
		"SELECT wait_event_type FROM pg_stat_get_activity($launcher)");
	last if $state eq 'Lock';
	usleep(10_000);
}
is($state, 'Lock', 'the launcher waits for the lock on pg_database');
$locker->query_safe("SELECT pg_terminate_backend($launcher)");
$deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	$locker->query_safe('SELECT pg_stat_clear_snapshot()');
	$state = bq($locker, 
		"SELECT count(*) FROM pg_stat_get_activity($launcher)");
	last if $state eq '0';
	usleep(10_000);
}
is($state, '0', 'the blocked launcher is gone');
$locker->query_safe('COMMIT');
$locker->quit;
ok( $node->poll_query_until(
		'postgres', qq{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs launcher' AND pid <> $launcher}, '1'),
	'a new launcher runs');
launcher_round('the launcher started after the lock');
is(sql('postgres', $reapers_query),
	$reapers, 'still one reaper per database: the same ones');
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE r12');
is($ret, 0, 'DROP DATABASE of a served database succeeds')
  or diag $stderr;

$node->stop;
done_testing();
