# The background workers and DDL, library preloaded: a CREATE EXTENSION in a
# second database is served without a restart; DROP EXTENSION, CREATE
# DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME and DROP DATABASE each
# succeed within a few seconds while a reaper serves the database, and
# nothing of immich_jobs logs an error.
#
# Then, on a server without the preload: CREATE EXTENSION says that leases
# are only reclaimed by reap(), no worker runs, and reap() does the work.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('ddl');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 200ms
log_line_prefix = '%m [%p] %b '
});
$node->start;

sub sql
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

# how many reapers serve a database
sub reapers_query
{
	my ($db) = @_;
	return qq{SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'};
}

# wait until a reaper serves $db, and has done a round there: its
# query_start is the start of its last round
sub wait_served
{
	my ($db, $what) = @_;
	ok( $node->poll_query_until(
			'postgres', reapers_query($db) . ' AND query_start IS NOT NULL',
			'1'),
		"$what: a reaper serves \"$db\"");
}

# a job in a new queue of $db whose lease expires: the reaper must reclaim it
sub check_reclaims
{
	my ($db, $queue, $what) = @_;
	sql($db, qq{
SELECT immich_jobs.create_queue('$queue', lease_timeout => '1 second');
SELECT immich_jobs.enqueue('$queue', 'j');
SELECT count(*) FROM immich_jobs.claim('$queue', 'w');
});
	ok( $node->poll_query_until(
			$db, qq{
SELECT state || '|' || last_error FROM immich_jobs.jobs
 WHERE queue_name = '$queue'}, 'waiting|lease expired'),
		"$what: the reaper reclaims an expired lease in \"$db\"");
}

# run a statement in $db; returns how long it took, in seconds
sub timed
{
	my ($db, $sql) = @_;
	my $start = time;
	my ($ret, $stdout, $stderr) = $node->psql($db, $sql);
	my $elapsed = time - $start;
	is($ret, 0, "$sql: succeeds") or diag $stderr;
	note sprintf('%s took %.3f s', $sql, $elapsed);
	return $elapsed;
}

sql('postgres', 'CREATE EXTENSION immich_jobs');
wait_served('postgres', 'at start');
my $launcher = sql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'immich_jobs launcher'"
);

# A second database, created while the server runs.
sql('postgres', 'CREATE DATABASE db2');
my ($ret, $stdout, $stderr) = $node->psql('db2', 'CREATE EXTENSION immich_jobs');
is($stderr, '', 'CREATE EXTENSION in db2 raises no NOTICE (the library is preloaded)');
wait_served('db2', 'after CREATE EXTENSION, without a restart');
check_reclaims('db2', 'q1', 'after CREATE EXTENSION');
ok( $node->log_contains(
		qr/immich_jobs reclaimed 1 expired lease in database "db2"/),
	'the log names the database');

# DROP EXTENSION while served
wait_served('db2', 'before DROP EXTENSION');
cmp_ok(timed('db2', 'DROP EXTENSION immich_jobs'),
	'<', 5, 'DROP EXTENSION took less than 5 s');

# CREATE EXTENSION again: served again
sql('db2', 'CREATE EXTENSION immich_jobs');
wait_served('db2', 'after DROP and CREATE EXTENSION');
check_reclaims('db2', 'q2', 'after DROP and CREATE EXTENSION');

# CREATE DATABASE ... TEMPLATE db2 while served (no one else may be
# connected to a template that is copied)
cmp_ok(timed('postgres', 'CREATE DATABASE db2copy TEMPLATE db2'),
	'<', 5, 'CREATE DATABASE ... TEMPLATE took less than 5 s');
wait_served('db2copy', 'the copy has the extension');

# ALTER DATABASE ... RENAME while served (the reaper of db2 comes back a
# few seconds after the CREATE DATABASE)
wait_served('db2', 'before ALTER DATABASE ... RENAME');
cmp_ok(timed('postgres', 'ALTER DATABASE db2 RENAME TO db3'),
	'<', 5, 'ALTER DATABASE ... RENAME took less than 5 s');
wait_served('db3', 'after the rename');
check_reclaims('db3', 'q3', 'after the rename');

# DROP DATABASE while served
cmp_ok(timed('postgres', 'DROP DATABASE db3'),
	'<', 5, 'DROP DATABASE took less than 5 s');
wait_served('db2copy', 'before DROP DATABASE of the copy');
cmp_ok(timed('postgres', 'DROP DATABASE db2copy'),
	'<', 5, 'DROP DATABASE of the copy took less than 5 s');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE datname IN ('db3', 'db2copy')}),
	'0',
	'nothing is connected to the dropped databases');

# the launcher has served all along, and the first database still is
is( sql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'immich_jobs launcher'"
	),
	$launcher,
	'the launcher that started with the server still runs');
check_reclaims('postgres', 'q4', 'at the end');

$node->stop;

# The server log up to the shutdown: no ERROR, FATAL or PANIC at all (this
# test runs no failing statement), and no immich_jobs worker ended with an
# error.  (At shutdown the launcher exits with code 1, as PostgreSQL's own
# logical replication launcher does, so that a pg_terminate_backend() of it
# makes the postmaster start it again.)
my $log = slurp_file($node->logfile);
$log =~ s/\n[^\n]*received (fast|smart|immediate) shutdown request.*//s;
my @bad = grep {
	/\b(ERROR|FATAL|PANIC):/
	  || /background worker "immich_jobs [a-z]+" .* (exited with exit code [1-9]|terminated by signal)/
} split /\n/, $log;
is(scalar(@bad), 0, 'the server log has no ERROR or FATAL lines, and no immich_jobs worker failed')
  or diag join("\n", @bad);

#
# DDL stops a reaper whose round waits for a lock: the round is cancelled
# and the reaper leaves at once, quietly (no ERROR or FATAL of its own, exit
# code 0), and the DDL goes on.  (A SIGTERM would end it with a FATAL.)
#
$node->start;
sql('postgres', 'CREATE DATABASE db5');
sql('db5', 'CREATE EXTENSION immich_jobs');
wait_served('db5', 'a database whose rounds will wait');
my $locker = $node->background_psql('db5', on_error_stop => 0);
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE immich_jobs.job IN ACCESS EXCLUSIVE MODE');
ok( $node->poll_query_until(
		'postgres', reapers_query('db5') . q{ AND wait_event_type = 'Lock'}, '1'),
	"the reaper of \"db5\" waits for the table's lock in its round");
my $reaper = sql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'immich_jobs reaper' AND datname = 'db5'}
);
my $offset = -s $node->logfile;
cmp_ok(timed('postgres', 'DROP DATABASE db5 WITH (FORCE)'),
	'<', 5, 'DROP DATABASE ... WITH (FORCE) took less than 5 s');
eval { $locker->quit; };    # its session was terminated by the DROP
$node->stop;
my @reaper_lines = grep { /\[$reaper\]/ && /\b(ERROR|FATAL|PANIC):/ }
  split /\n/, substr(slurp_file($node->logfile), $offset);
is(scalar(@reaper_lines), 0, 'the reaper stopped in its round logged no ERROR or FATAL')
  or diag join("\n", @reaper_lines);
unlike(
	substr(slurp_file($node->logfile), $offset),
	qr/\(PID $reaper\) (exited with exit code [1-9]|was terminated by signal)/,
	'the reaper stopped in its round exited with code 0');

#
# Without the preload
#
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;

($ret, $stdout, $stderr) = $plain->psql('postgres', 'CREATE EXTENSION immich_jobs');
is($ret, 0, 'without the preload, CREATE EXTENSION succeeds');
like(
	$stderr,
	qr/NOTICE:  immich_jobs is not in shared_preload_libraries\nDETAIL:  Expired leases are reclaimed only by calling immich_jobs.reap\(\)/,
	'with a NOTICE that leases are then only reclaimed by reap()');
like(
	$stderr,
	qr/HINT:  Add immich_jobs to shared_preload_libraries and restart the server\./,
	'and a HINT saying how to get the background workers');
is( $plain->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'immich_jobs%'}),
	'0',
	'no immich_jobs worker runs');

# a lease expires: reap() reclaims it
$plain->safe_psql(
	'postgres', q{
SELECT immich_jobs.create_queue('q', lease_timeout => '1 second');
SELECT immich_jobs.enqueue('q', 'j');
SELECT count(*) FROM immich_jobs.claim('q', 'w');
-- as a superuser, expire the lease now instead of waiting (changes no count)
UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 minute';
});
is( $plain->safe_psql(
		'postgres', q{
SELECT state FROM immich_jobs.jobs WHERE queue_name = 'q'}),
	'active', 'before reap(), the job with the expired lease is active');
is($plain->safe_psql('postgres', 'SELECT immich_jobs.reap()'),
	'1', 'reap() reclaims it');
is( $plain->safe_psql(
		'postgres', q{
SELECT state || '|' || attempt || '|' || last_error
  FROM immich_jobs.jobs WHERE queue_name = 'q'}),
	'waiting|1|lease expired',
	'the job is waiting again, with last_error "lease expired"');
$plain->stop;

done_testing();
