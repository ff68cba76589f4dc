# Shared entries of queues whose database or extension is gone are reused:
# with room for 16 entries, queues can be created again and again in new
# databases that replace dropped ones.
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

# the limit itself: a 16th entry in one database is refused with 53400
my ($ret, $stdout, $stderr) = $node->psql('again', q{
	SET client_min_messages = warning;
	CREATE EXTENSION immich_jobs;
	SELECT immich_jobs.create_queue('q' || i) FROM generate_series(1, 16) i;
}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'more queues than immich_jobs.max_queues is an error');
like($stderr, qr/53400: too many immich_jobs queues in shared memory/,
	'with SQLSTATE 53400 and a clear message');

$node->stop;
done_testing();
