# The background workers on a streaming standby, library preloaded there
# too: no immich_jobs worker runs during recovery, even with an expired lease
# in the data, and nothing is logged as an error; after promotion a launcher
# and a reaper start and reclaim that lease.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 200ms
log_line_prefix = '%m [%p] %b '
});
$primary->start;
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('q', lease_timeout => '1 second');
});
ok( $primary->poll_query_until(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = 'postgres'}, '1'),
	'the primary has a reaper');

# the standby: the same settings, from the backup
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# The primary stops serving its database (so that the lease below stays
# expired and unreclaimed), then a worker takes a lease and vanishes.
$primary->append_conf('postgresql.conf', q{immich_jobs.databases = ''});
$primary->reload;
ok( $primary->poll_query_until(
		'postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'immich_jobs reaper'},
		'0'),
	'with immich_jobs.databases = \'\', the primary has no reaper');
$primary->safe_psql(
	'postgres', q{
SELECT immich_jobs.enqueue('q', 'j');
SELECT count(*) FROM immich_jobs.claim('q', 'vanished');
});
$primary->wait_for_catchup($standby);

# On the standby, the lease expires and nothing happens.
ok( $standby->poll_query_until(
		'postgres', q{
SELECT state = 'active' AND lease_expires_at < now()
  FROM immich_jobs.jobs WHERE queue_name = 'q'}),
	'the standby has the job, with its lease expired');
is( $standby->safe_psql(
		'postgres', q{
SELECT pg_is_in_recovery(), count(*) FROM pg_stat_activity
 WHERE backend_type LIKE 'immich_jobs%'}),
	't|0',
	'no immich_jobs worker runs on the standby');
$primary->stop;

my @errors = grep { /\b(ERROR|PANIC):/ || /immich_jobs.*\b(FATAL|WARNING):/ }
  split /\n/, slurp_file($standby->logfile);
is(scalar(@errors), 0,
	'the standby\'s log has no ERROR lines, and nothing from immich_jobs above LOG')
  or diag join("\n", @errors);

# Promotion: the workers start, and reclaim the lease.
my $log_offset = -s $standby->logfile;
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'the standby is promoted');
ok( $standby->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE backend_type = 'immich_jobs launcher') || '|' ||
	   count(*) FILTER (WHERE backend_type = 'immich_jobs reaper'
						  AND datname = 'postgres')
  FROM pg_stat_activity}, '1|1'),
	'after promotion, a launcher and a reaper run');
ok( $standby->poll_query_until(
		'postgres', q{
SELECT state || '|' || attempt || '|' || last_error
  FROM immich_jobs.jobs WHERE queue_name = 'q'}, 'waiting|1|lease expired'),
	'the promoted server reclaims the expired lease');
ok( $standby->log_contains(
		qr/immich_jobs reaper LOG:  immich_jobs reclaimed 1 expired lease in database "postgres"/,
		$log_offset),
	'and logs it');
is( $standby->safe_psql(
		'postgres', q{
SELECT job_name || '|' || attempt FROM immich_jobs.claim('q', 'new-worker')}),
	'j|2',
	'a worker on the promoted server claims it, attempt 2');

$standby->stop;

@errors = grep { /\b(ERROR|PANIC):/ || /immich_jobs.*\b(FATAL|WARNING):/ }
  split /\n/, slurp_file($standby->logfile);
is(scalar(@errors), 0,
	'the promoted server\'s log has no ERROR lines, and nothing from immich_jobs above LOG')
  or diag join("\n", @errors);

done_testing();
