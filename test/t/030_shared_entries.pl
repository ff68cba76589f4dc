# Shared entries of queues whose database or extension is gone are reused:
# with room for 16 entries, queues can be created again and again in new
# databases that replace dropped ones.  When the table is full, queues beyond
# it are served from their rows, with one WARNING and never an ERROR: one
# database filling it (its application role calling create_queue in a loop)
# leaves another database fully usable, its reaper included; once there is
# room again, such a queue gets its entry when it is next used.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('entries');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'immich_jobs'
immich_jobs.max_queues = 16
});
$node->start;

# one database at a time, each with 10 queues (11 entries with its marker)
foreach my $round (1 .. 3)
{
	my $db = "round$round";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		SET client_min_messages = warning;
		CREATE EXTENSION immich_jobs;
		SELECT immich_jobs.create_queue('q' || i) FROM generate_series(1, 10) i;
	});
	is($node->safe_psql($db, q{
		SELECT immich_jobs.enqueue('q1', 'j') > 0;
		SELECT count(*) FROM immich_jobs.claim('q1', 'w');
	}), "t\n1", "round $round: queues of a new database are served");
	$node->safe_psql('postgres', "DROP DATABASE $db");
}

# DROP EXTENSION and CREATE EXTENSION again in one database
$node->safe_psql('postgres', 'CREATE DATABASE again');
foreach my $round (1 .. 3)
{
	is($node->safe_psql('again', q{
		SET client_min_messages = warning;
		CREATE EXTENSION immich_jobs;
		SELECT count(immich_jobs.create_queue('q' || i)) FROM generate_series(1, 10) i;
		DROP EXTENSION immich_jobs;
	}), "10", "re-created extension, round $round: 10 queues served");
}

# the limit itself: one database fills the table, with a WARNING, no ERROR
$node->append_conf('postgresql.conf', "immich_jobs.reaper_interval = 100ms");
$node->reload;
my ($ret, $stdout, $stderr) = $node->psql('again', q{
	SET client_min_messages = warning;
	CREATE EXTENSION immich_jobs;
	SELECT count(immich_jobs.create_queue('q' || i)) FROM generate_series(1, 20) i;
}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
is($ret, 0, 'more queues than immich_jobs.max_queues is no error');
is($stdout, '20', 'all 20 queues are created');
my @warnings = ($stderr =~ /WARNING:  01000|WARNING:  53400/g);
is(scalar(@warnings), 1, 'one WARNING');
like($stderr, qr/WARNING:  53400: immich_jobs.max_queues is reached: queue "q\d+" is served without shared memory/,
	'it says which setting, with SQLSTATE 53400');

# another database stays usable: create, enqueue, claim within its limit,
# counts, and its reaper reclaims
$node->safe_psql('postgres', 'CREATE DATABASE victim');
is($node->safe_psql('victim', q{
	SET client_min_messages = error;
	CREATE EXTENSION immich_jobs;
	SELECT immich_jobs.create_queue('v', concurrency => 2, lease_timeout => '1 second');
	SELECT count(immich_jobs.enqueue('v', 'j')) FROM generate_series(1, 5);
	SELECT count(*) FROM immich_jobs.claim('v', 'w', 5);
	SELECT count(*) FROM immich_jobs.claim('v', 'w', 5);
	SELECT active || ' ' || waiting FROM immich_jobs.queue_counts WHERE queue_name = 'v';
}), "\n5\n2\n0\n2 3", 'another database creates, enqueues, claims within its limit and counts');
ok($node->poll_query_until('victim', q{
	SELECT active = 0 AND waiting = 5 FROM immich_jobs.queue_counts WHERE queue_name = 'v'}),
	'its reaper reclaims the expired leases');
# and the full database's last queues work too, their counts exact
is($node->safe_psql('again', q{
	SELECT immich_jobs.enqueue('q20', 'j') > 0;
	SELECT count(*) FROM immich_jobs.claim('q20', 'w', 5);
	SELECT active || ' ' || waiting FROM immich_jobs.queue_counts WHERE queue_name = 'q20';
}), "t\n1\n1 0", 'a queue beyond the limit is served from its rows');

# Room again: once the full database is dropped, the queue beyond the limit
# gets its entry when it is next used, and claims of it stop taking turns
# on its row (on the row, the second claim would wait for the first one's
# transaction: lock_timeout proves it does not).
$node->safe_psql('postgres', 'DROP DATABASE again');
# (no reaper from here on: a late load does not wait for a round in
# progress, and this one must happen at the first claim)
$node->safe_psql('postgres', "ALTER SYSTEM SET immich_jobs.databases = ''");
$node->reload;
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'immich_jobs reaper'}),
	'no reaper runs');
my $first = $node->background_psql('victim');
$first->query_safe('BEGIN');
my $got = $first->query_safe(
	q{SELECT count(*) FROM immich_jobs.claim('v', 'first', 1)});
$got =~ s/\n+\z//;    # 16.2's BackgroundPsql leaves a newline
is($got, '1', 'room again: a claim of the queue, its transaction left open');
($ret, $stdout, $stderr) = $node->psql('victim', q{
	SET lock_timeout = '10s';
	SELECT count(*) FROM immich_jobs.claim('v', 'second', 1);
});
is($ret, 0, 'room again: the queue is loaded, a second claim does not wait')
  or diag($stderr);
is($stdout, '1', 'and gets a job');
$first->query_safe('COMMIT');
$first->quit;

$node->stop;
done_testing();
