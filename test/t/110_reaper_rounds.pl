# A reaper's rounds on a real cluster:
#
# 1. An idle server writes nothing: over 20 rounds with nothing to do, in a
#    database with queues, tables analyzed and completed jobs folded just
#    before, the WAL insert position and the next transaction id do not move.
# 2. An ERROR in a round (here a trigger someone put on the job table) is
#    logged and the reaper goes on, the same process: once the cause is gone
#    it reclaims the lease.
# 3. Database settings that would fail every round
#    (default_transaction_read_only) do not apply to a reaper.
# 4. A reaper does not wait for its database's lock when it connects, which
#    ALTER DATABASE ... RENAME holds to the end of its transaction: it gives
#    up after 5 s (the launcher tries again later), and serves the database
#    once the rename is over.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('rounds');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 100ms
# nothing else may write WAL while part 1 watches it
wal_level = minimal
max_wal_senders = 0
autovacuum = off
});
$node->start;

sub sql
{
	my ($db, $sql) = @_;
	return $node->safe_psql($db, $sql);
}

# the reaper of a database, once it runs
sub reaper_pid
{
	my ($db) = @_;
	$node->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'})
	  or return '';
	return sql('postgres', qq{
SELECT pid FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'});
}

# the transactions a database's backends have committed (the reaper's rounds,
# when nobody else uses it), read from another database
sub commits
{
	my ($db) = @_;
	return sql('postgres', qq{
SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'});
}

#
# 1. idle
#
sql('postgres', 'CREATE DATABASE idle');
sql('idle', q{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('q' || i, concurrency => 10) FROM generate_series(1, 5) i;
SELECT immich_jobs.enqueue('q' || (i % 5 + 1), 'j') FROM generate_series(1, 500) i;
});
ok(reaper_pid('idle'), 'the database has a reaper');
# no reaper while the completion log fills up and the tables are analyzed,
# so that the statistics say the log is large: the plans the next reaper
# makes then read the queues first
$node->append_conf('postgresql.conf', "immich_jobs.databases = ''");
$node->reload;
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'immich_jobs reaper'}),
	'no reaper while the log fills');
for my $q (1 .. 5)
{
	for my $i (1 .. 20)
	{
		sql('idle', qq{
SELECT immich_jobs.complete(job_id, lease_token) FROM immich_jobs.claim('q$q', 'w', 1)});
	}
}
is(sql('idle', 'SELECT count(*) FROM immich_jobs.completed_log'), '100',
	'one log row per completing transaction');
sql('idle', 'ANALYZE immich_jobs.queue, immich_jobs.job, immich_jobs.completed_log');
$node->append_conf('postgresql.conf', "immich_jobs.databases = '*'");
$node->reload;
ok( $node->poll_query_until('idle',
		'SELECT count(*) = 0 FROM immich_jobs.completed_log'),
	'a new reaper folded the completions');
my $pid = reaper_pid('idle');
ok($pid, 'it runs');
# what folding and its reads left to prune on access, before measuring
sql('idle', 'VACUUM immich_jobs.queue, immich_jobs.job, immich_jobs.completed_log');
my $lsn = sql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my $xid = sql('postgres', 'SELECT pg_snapshot_xmax(pg_current_snapshot())');
my $base = commits('idle');
ok( $node->poll_query_until('postgres', qq{
SELECT xact_commit >= $base + 20 FROM pg_stat_database WHERE datname = 'idle'}),
	'the reaper ran 20 rounds');
is(sql('postgres', 'SELECT pg_current_wal_insert_lsn()'), $lsn,
	'20 idle rounds wrote no WAL');
is(sql('postgres', 'SELECT pg_snapshot_xmax(pg_current_snapshot())'), $xid,
	'20 idle rounds took no transaction id');
is(reaper_pid('idle'), $pid, 'the same reaper ran them all');

#
# 2. an error in a round
#
sql('postgres', 'CREATE DATABASE errors');
sql('errors', q{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('q', lease_timeout => '1 second');
SELECT immich_jobs.enqueue('q', 'j');
CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql
    AS $$BEGIN RAISE EXCEPTION 'boom: reclaiming is forbidden today'; END$$;
CREATE TRIGGER boom BEFORE UPDATE ON immich_jobs.job
    FOR EACH ROW WHEN (OLD.state = 'a') EXECUTE FUNCTION boom();
SELECT count(*) FROM immich_jobs.claim('q', 'w');
});
$pid = reaper_pid('errors');
ok($pid, 'the database has a reaper');
my $log_offset = -s $node->logfile;
ok($node->wait_for_log(qr/ERROR:  boom: reclaiming is forbidden today/, $log_offset),
	'the error of the round is logged');
is(reaper_pid('errors'), $pid, 'the same reaper goes on after the error');
sql('errors', 'DROP TRIGGER boom ON immich_jobs.job');
ok( $node->poll_query_until('errors', q{
SELECT state = 'waiting' AND last_error = 'lease expired' FROM immich_jobs.jobs}),
	'once the cause is gone, it reclaims the lease');
is(reaper_pid('errors'), $pid, 'still the same reaper');

#
# 3. settings of the database that would fail every round
#
sql('postgres', 'ALTER DATABASE errors SET default_transaction_read_only = on');
sql('postgres', "SELECT pg_terminate_backend($pid)");
sql('errors', q{
SET default_transaction_read_only = off;
SELECT count(*) FROM immich_jobs.claim('q', 'w');
});
ok( $node->poll_query_until('errors', q{
SELECT state = 'waiting' AND attempt = 2 FROM immich_jobs.jobs}),
	'with default_transaction_read_only on the database, the reaper still reclaims');
sql('postgres', 'ALTER DATABASE errors RESET default_transaction_read_only');

#
# 4. ALTER DATABASE ... RENAME held in a transaction
#
sql('postgres', 'CREATE DATABASE renamed');
sql('renamed', 'SET client_min_messages = warning; CREATE EXTENSION immich_jobs');
ok(reaper_pid('renamed'), 'the database has a reaper');
my $dboid = sql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'renamed'});
$log_offset = -s $node->logfile;
my $rename = $node->background_psql('postgres');
$rename->query_safe('BEGIN');
$rename->query_safe('ALTER DATABASE renamed RENAME TO renamed2');
# the launcher starts a reaper again 5 s after the command; it waits for the
# database's lock, and gives up after 5 s
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) > 0 FROM pg_locks
 WHERE locktype = 'object' AND classid = 'pg_database'::regclass
   AND objid = $dboid AND NOT granted}),
	'a reaper waits for the database\'s lock');
ok( $node->wait_for_log(
		qr/ERROR:  canceling statement due to lock timeout\n.*CONTEXT:  immich_jobs reaper connecting to database $dboid; it tries again later/,
		$log_offset),
	'it gives up after the lock timeout, and says so');
$rename->query_safe('COMMIT');
$rename->quit;
ok(reaper_pid('renamed2'), 'the renamed database has a reaper again');

$node->stop;
done_testing();
