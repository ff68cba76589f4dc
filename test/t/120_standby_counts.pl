# The shared counters and a hot standby.  Calls on a standby (claims,
# completions, counts: every one fails as read-only, or only reads) must not
# load the queue counters into the standby's shared memory, since replay
# changes the tables behind them; after promotion the counts and admission
# must be exact.  (Before the fix, a queue showed active = 2 with none active
# and refused every claim; another, loaded with active = 0, admitted a second
# job under concurrency 1.)

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
# no reaper: nothing but the calls below changes the jobs
immich_jobs.databases = ''
});
$primary->start;
$primary->safe_psql('postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('one', concurrency => 1, lease_timeout => '1 hour');
SELECT immich_jobs.create_queue('two', concurrency => 2, lease_timeout => '1 hour');
SELECT immich_jobs.enqueue(q, 'j') FROM unnest(ARRAY['one', 'two']) q, generate_series(1, 3);
CREATE TABLE held AS SELECT * FROM immich_jobs.claim('two', 'w', 2);
});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

# every kind of call on the standby
for my $call (
	q{SELECT * FROM immich_jobs.claim('one', 'w', 1)},
	q{SELECT * FROM immich_jobs.claim('two', 'w', 1)},
	q{SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token)) FROM held},
	q{SELECT * FROM immich_jobs.complete_and_claim('two', 'w', 1)},
	q{SELECT immich_jobs.enqueue('one', 'x')},
	q{SELECT immich_jobs.reap()})
{
	my ($ret, $out, $err) = $standby->psql('postgres', $call);
	like($err, qr/read-only transaction|recovery/, "on the standby, refused: $call");
}
is($standby->safe_psql('postgres', q{
SELECT string_agg(queue_name || ':' || active || '/' || waiting, ' ' ORDER BY queue_name)
  FROM immich_jobs.queue_counts}), 'one:0/3 two:2/1',
	'on the standby, the counts follow the tables');

# the primary changes everything the standby saw
$primary->safe_psql('postgres', q{
SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token)) FROM held;
SELECT count(*) FROM immich_jobs.claim('one', 'w', 1);
});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{
SELECT string_agg(queue_name || ':' || active || '/' || waiting, ' ' ORDER BY queue_name)
  FROM immich_jobs.queue_counts}), 'one:1/2 two:0/1',
	'the standby sees the changes replayed');

$primary->stop;
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'the standby is promoted');

# counts and admission are exact on the promoted server
is($standby->safe_psql('postgres', q{
SELECT string_agg(queue_name || ':' || active || '/' || waiting, ' ' ORDER BY queue_name)
  FROM immich_jobs.queue_counts}), 'one:1/2 two:0/1',
	'after promotion the counts are exact');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM immich_jobs.claim('one', 'w', 5)}),
	'0', 'concurrency 1 with one active: no second job');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM immich_jobs.claim('two', 'w', 5)}),
	'1', 'a queue with nothing active admits what it has');
is($standby->safe_psql('postgres', q{
SELECT string_agg(q.queue_name || ':' || q.active || '/' || q.waiting || '=' ||
                  (SELECT count(*) FILTER (WHERE state = 'active') || '/' ||
                          count(*) FILTER (WHERE state = 'waiting')
                     FROM immich_jobs.jobs j WHERE j.queue_name = q.queue_name),
                  ' ' ORDER BY q.queue_name)
  FROM immich_jobs.queue_counts q}), 'one:1/2=1/2 two:1/0=1/0',
	'the shared counts agree with the jobs');

$standby->stop;
done_testing();
