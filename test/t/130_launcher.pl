# The launcher serves the databases that have the extension, and only them
# (issue 9, item 6), with the default immich_jobs.databases = '*':
#
# 1. At server start it starts one reaper in each database to see whether
#    the extension is there; a database without it gets no other reaper over
#    the next 30 rounds of a served database's reaper (the launcher's rounds
#    come as often), nor after a CREATE EXTENSION that is rolled back or only
#    prepared; COMMIT PREPARED of that one gets the database its reaper.
#    The postmaster logs each start at DEBUG1 ("starting background worker
#    process"), which is what the test counts.
# 2. A CREATE EXTENSION tells the launcher: a new database, looked at once
#    and found without the extension, gets its reaper at once after CREATE
#    EXTENSION, with reaper_interval = 1h so that no timer could have found
#    it, and the reaper reclaims the lease that expired in that transaction.
#    So is a database made from a template that has the extension.
# 3. With max_worker_processes = 3 (the launcher and two reapers), 13
#    databases without the extension take no worker slot: the two that have
#    it are served.  A third one is not, and the log says so once over many
#    rounds, naming the database and what max_worker_processes needs; once a
#    slot is free (DROP EXTENSION in another database) it is served.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('launcher');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 100ms
# the postmaster logs each background worker it starts at DEBUG1
log_min_messages = debug1
log_statement = none
log_line_prefix = '%m [%p] %b '
max_prepared_transactions = 2
});
$node->start;

sub sql
{
	my ($db, $sql, $on) = @_;
	return ($on // $node)->safe_psql($db, $sql);
}

sub oid
{
	my ($db, $on) = @_;
	return sql('postgres',
		"SELECT oid FROM pg_database WHERE datname = '$db'", $on);
}

# how many reapers the postmaster started for a database (since $offset)
sub starts
{
	my ($db, $offset, $on) = @_;
	my $oid = oid($db, $on);
	my @starts = slurp_file(($on // $node)->logfile, $offset) =~
	  /starting background worker process "immich_jobs reaper for database $oid"/g;
	return scalar(@starts);
}

# the reapers running in a database
sub reapers_query
{
	my ($db) = @_;
	return qq{SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'};
}

# wait until a reaper serves $db and has done a round there
sub served
{
	my ($db, $on) = @_;
	return ($on // $node)->poll_query_until('postgres',
		reapers_query($db) . ' AND query_start IS NOT NULL', '1');
}

# a job of $db whose lease has expired, in the transaction of $before
sub expired_lease_sql
{
	my ($before) = @_;
	return qq{
BEGIN;
$before;
SELECT immich_jobs.create_queue('q', lease_timeout => '1 second');
SELECT immich_jobs.enqueue('q', 'j');
SELECT count(*) FROM immich_jobs.claim('q', 'w');
-- as a superuser, expire the lease now instead of waiting (changes no count)
UPDATE immich_jobs.job SET lease_expires_at = now() - interval '1 minute';
COMMIT;
};
}

# wait until the reaper of $db has reclaimed the lease
sub reclaimed
{
	my ($db, $on) = @_;
	return ($on // $node)->poll_query_until(
		$db, q{
SELECT state || '|' || last_error FROM immich_jobs.jobs WHERE queue_name = 'q'},
		'waiting|lease expired');
}

# the start times of the next $n rounds of $db's reaper, watched from
# "postgres" (a database without a reaper)
sub watch_rounds
{
	my ($db, $n, $on) = @_;
	my $watcher = ($on // $node)->background_psql('postgres');
	my @starts;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (@starts < $n)
	{
		die "timed out watching the reaper of $db" if time > $deadline;
		my $start = $watcher->query_safe(qq{
SELECT extract(epoch FROM query_start) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = '$db'});
		$start =~ s/\n+\z//;
		push @starts, $start
		  if $start ne '' && (!@starts || $start != $starts[-1]);
		usleep(10_000);
	}
	$watcher->quit;
	return scalar(@starts);
}

#
# 1. One look per database at server start, then none without a CREATE
#    EXTENSION.
#
my @noext = map { "noext$_" } 1 .. 5;
sql('postgres', "CREATE DATABASE $_") for (@noext, 'ext1');
sql('ext1', 'SET client_min_messages = warning; CREATE EXTENSION immich_jobs');
my $offset = -s $node->logfile;
$node->restart;

ok(served('ext1'),
	'after the restart, the database with the extension is served');

# every other database has been looked at, and nothing runs there
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
my @looked;
while (time < $deadline)
{
	@looked = grep { starts($_, $offset) >= 1 } ('postgres', @noext);
	last
	  if @looked == 1 + @noext
	  && sql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'immich_jobs reaper'"
	  ) eq '1';
	usleep(100_000);
}
is(scalar(@looked), 1 + @noext,
	'a reaper was started in each database without the extension, and none runs there now'
);

# CREATE EXTENSION rolled back: no news; prepared: no news until COMMIT
# PREPARED
sql('noext1', q{
BEGIN;
CREATE EXTENSION immich_jobs;
ROLLBACK;
});
sql('noext2', q{
BEGIN;
CREATE EXTENSION immich_jobs;
PREPARE TRANSACTION 'ext';
});

# Many rounds of the launcher: every round it wakes and lists the
# databases, every reaper_interval like the reaper of ext1.
is(watch_rounds('ext1', 30), 30, 'the reaper of ext1 ran 30 rounds');
is(join(',', map { starts($_, $offset) } ('postgres', @noext)),
	join(',', map { 1 } ('postgres', @noext)),
	'no database without the extension got another reaper over them '
	  . '(nor after a rolled back or prepared CREATE EXTENSION)');
is(starts('ext1', $offset), 1, 'ext1 kept its reaper');
ok( !$node->log_contains(qr/could not start a reaper/, $offset),
	'no warning while the first reapers look (the slots they hold come free)'
);

# COMMIT PREPARED: the extension is there now, and served
my $noext2_starts = starts('noext2', $offset);
sql('noext2', "COMMIT PREPARED 'ext'");
ok(served('noext2'),
	'after COMMIT PREPARED of a CREATE EXTENSION, the database is served');
is(starts('noext2', $offset), $noext2_starts + 1, 'by one new reaper');
sql('noext2', 'DROP EXTENSION immich_jobs');
ok( $node->poll_query_until('postgres', reapers_query('noext2'), '0'),
	'after DROP EXTENSION its reaper exits');

#
# 2. A CREATE EXTENSION tells the launcher.
#
sql('postgres', 'CREATE DATABASE late');
$deadline = time + $PostgreSQL::Test::Utils::timeout_default;
usleep(100_000) while time < $deadline && starts('late', $offset) < 1;
ok( $node->poll_query_until('postgres', reapers_query('late'), '0')
	  && starts('late', $offset) == 1,
	'a new database gets one reaper, which finds no extension and exits');

# no timer in the way: reaper_interval (and the launcher's round) 1 hour
$node->append_conf('postgresql.conf', 'immich_jobs.reaper_interval = 1h');
$node->reload;
ok( $node->poll_query_until(
		'postgres', 'SHOW immich_jobs.reaper_interval', '1h'),
	'reaper_interval is 1h');

sql('late', expired_lease_sql('CREATE EXTENSION immich_jobs'));
ok(served('late'),
	'after CREATE EXTENSION, a reaper serves the database at once');
ok(reclaimed('late'), 'and reclaims the lease that expired');
is(starts('late', $offset), 2, 'a second reaper in that database, in all');
ok( $node->log_contains(
		qr/immich_jobs reaper LOG:  immich_jobs reclaimed 1 expired lease in database "late"/,
		$offset),
	'the log says so');

# CREATE DATABASE ... TEMPLATE of a database that has the extension runs no
# CREATE EXTENSION: the new database is news all the same, served at once
sql('postgres', 'CREATE DATABASE tmpl');
sql('tmpl', 'SET client_min_messages = warning; CREATE EXTENSION immich_jobs');
ok(served('tmpl'), 'the template-to-be is served');
# an expired lease, after its reaper's round (the next is an hour away):
# the copy has it, for the new database's first round to reclaim
sql('tmpl', expired_lease_sql('SELECT 1'));
sql('postgres', 'CREATE DATABASE fromtmpl TEMPLATE tmpl');
ok(served('fromtmpl'),
	'a database made from a template that has the extension is served at once');
ok(reclaimed('fromtmpl'), 'and its expired lease is reclaimed');

$node->stop;

#
# 3. Few worker slots: the databases without the extension take none.
#
my $small = PostgreSQL::Test::Cluster->new('small');
$small->init;
$small->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 100ms
log_line_prefix = '%m [%p] %b '
log_statement = none
# the launcher and two reapers, nothing else
max_worker_processes = 3
max_logical_replication_workers = 0
max_parallel_workers = 0
max_parallel_workers_per_gather = 0
});
$small->start;

my $create_ext = 'SET client_min_messages = warning; CREATE EXTENSION immich_jobs';
sql('postgres', "CREATE DATABASE noext$_", $small)
  for map { sprintf '%02d', $_ } 1 .. 12;
for my $db ('ext_a', 'ext_b')
{
	sql('postgres', "CREATE DATABASE $db", $small);
	sql($db, expired_lease_sql($create_ext), $small);
}
ok(served('ext_a', $small) && served('ext_b', $small),
	'with 13 databases without the extension, both that have it are served');
ok(reclaimed('ext_a', $small) && reclaimed('ext_b', $small),
	'and their expired leases are reclaimed');
is( sql('postgres', q{
SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper'}, $small),
	'ext_a,ext_b',
	'the only reapers are theirs');

# a third database with the extension: no slot for it
$offset = -s $small->logfile;
sql('postgres', 'CREATE DATABASE ext_c', $small);
sql('ext_c', expired_lease_sql($create_ext), $small);
ok( $small->wait_for_log(
		qr/WARNING:  immich_jobs could not start a reaper for database "ext_c"\n.*DETAIL:  No background worker slot is free\..*\n.*HINT:  immich_jobs needs a background worker for its launcher and one for each database that has the extension: 4 now\.  Set max_worker_processes \(3 now\) to at least that /,
		$offset),
	'the log names the database not served, and says how to size max_worker_processes'
);
is(watch_rounds('ext_a', 10, $small),
	10, 'the reaper of ext_a ran 10 rounds since');
is(sql('ext_c', "SELECT state FROM immich_jobs.jobs", $small),
	'active', 'the expired lease in ext_c is still not reclaimed');

# a slot comes free: ext_c is served, and was warned about once
sql('ext_b', 'DROP EXTENSION immich_jobs', $small);
ok(reclaimed('ext_c', $small),
	'once DROP EXTENSION in another database frees a slot, the lease is reclaimed');
ok(served('ext_c', $small), 'and ext_c has a reaper');
my @warnings = slurp_file($small->logfile, $offset) =~
  /(could not start a reaper for database "ext_c")/g;
is(scalar(@warnings), 1, 'the warning was logged once, not every round');
is( sql('postgres', q{
SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper'}, $small),
	'ext_a,ext_c',
	'the reapers are those of ext_a and ext_c');

# ext_b again: it has to wait now, and the log says so
$offset = -s $small->logfile;
sql('ext_b', 'CREATE EXTENSION immich_jobs', $small);
ok( $small->wait_for_log(
		qr/WARNING:  immich_jobs could not start a reaper for database "ext_b"\n.*DETAIL:  No background worker slot is free\.  Until one is, expired leases in this database are not reclaimed/,
		$offset),
	'CREATE EXTENSION again in ext_b: no slot, and the log says its expired leases wait'
);

$small->stop;
done_testing();
