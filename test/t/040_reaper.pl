# The background workers, with the library preloaded and nobody calling
# reap(): they show in pg_stat_activity; the leases of a client killed with
# kill -9 come back within lease_timeout + 2 reaper intervals and are
# completed by another worker while the dead client's tokens are refused; a
# lease that expires on the last attempt ends the job as failed; a delayed
# job that comes due wakes a LISTENing client within 2 intervals; a reload
# changes the interval, and bad values are refused with a clear message
# while the old ones stay in effect.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

# the reaper's interval, and the bound the issue sets: lease_timeout + 2
# intervals after the claim, i.e. 2 intervals after the lease expired
my $interval_ms = 200;
my $bound_ms = 2 * $interval_ms;

my $node = PostgreSQL::Test::Cluster->new('reaper');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = ${interval_ms}ms
# the backend type in each log line; log times in UTC, read back by SQL
log_line_prefix = '%m [%p] %b '
log_timezone = 'UTC'
});
$node->start;

sub sql
{
	my ($sql, $db) = @_;
	return $node->safe_psql($db // 'postgres', $sql);
}

# With the preload, CREATE EXTENSION says nothing.
my ($ret, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE EXTENSION immich_jobs');
is($ret, 0, 'CREATE EXTENSION succeeds');
is($stderr, '', 'with the library preloaded, CREATE EXTENSION raises no NOTICE');

# The launcher (no database) and the reaper of "postgres" show up in
# pg_stat_activity with their own backend_type.
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) FILTER (WHERE backend_type = 'immich_jobs launcher'
						  AND datname IS NULL) || '|' ||
	   count(*) FILTER (WHERE backend_type = 'immich_jobs reaper'
						  AND datname = 'postgres'
						  AND application_name = 'immich_jobs reaper')
  FROM pg_stat_activity}, '1|1'),
	'pg_stat_activity shows one "immich_jobs launcher" and one "immich_jobs reaper" for the database'
);

#
# A client holding 10 leases is killed.
#
sql(q{
SELECT immich_jobs.create_queue('k', concurrency => 10,
								lease_timeout => '1 second', max_attempts => 3);
SELECT immich_jobs.enqueue_many('k',
	(SELECT jsonb_agg(jsonb_build_object('name', 'j' || i))
	   FROM generate_series(1, 10) i));
});

# The client: a psql that claims 10 jobs (autocommit; the leases are kept in
# table "doomed", committed with the claim), then sits idle, waiting for
# input that never comes.
my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my ($c_in, $c_out, $c_err) = ('', '', '');
my $client = IPC::Run::start(
	[
		$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres')
	],
	'<', \$c_in, '>', \$c_out, '2>', \$c_err, $timer);
$c_in .= q{
SELECT 'pid=' || pg_backend_pid();
CREATE TABLE doomed AS
  SELECT job_id, lease_token, attempt, lease_expires_at
	FROM immich_jobs.claim('k', 'doomed', 10);
SELECT 'claimed=' || count(*) FROM doomed;
};
ok(pump_until($client, $timer, \$c_out, qr/^claimed=\d+$/m),
	'the client has claimed');
like($c_out, qr/^claimed=10$/m, 'the client holds 10 leases');
my ($client_backend) = $c_out =~ /^pid=(\d+)$/m;

# kill -9 of the client process, and pg_terminate_backend of its session
# (if the server has not already noticed the connection is gone)
$client->signal('KILL');
eval { $client->finish };
sql(
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $client_backend"
);
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $client_backend",
		'0'),
	'the killed client\'s session is gone');

# One round reclaims the 10 leases (they expire together) and logs one line
# with the count.  Its time is the log line's; the lease's expiry and the
# log's time come from the same server clock.
my $log_offset = 0;
$log_offset = $node->wait_for_log(
	qr/immich_jobs reclaimed 10 expired leases in database "postgres"/,
	$log_offset);
my ($reclaim_ts) =
  slurp_file($node->logfile) =~
  /^(\S+ \S+ \S+) \[\d+\] immich_jobs reaper LOG:  immich_jobs reclaimed 10 expired leases in database "postgres"$/m;
ok(defined $reclaim_ts, 'the line is logged by the reaper')
  or $reclaim_ts = 'now';
my ($after_expiry_ms, $after_claim_ms) = split /\|/, sql(qq{
SELECT round(extract(epoch FROM '$reclaim_ts'::timestamptz - max(lease_expires_at)) * 1000),
	   round(extract(epoch FROM '$reclaim_ts'::timestamptz
							  - (max(lease_expires_at) - interval '1 second')) * 1000)
  FROM doomed});
note "the leases were reclaimed ${after_claim_ms} ms after the claim, "
  . "${after_expiry_ms} ms after they expired";
cmp_ok($after_expiry_ms, '>=', 0, 'no lease was reclaimed before it expired');
cmp_ok($after_claim_ms, '<=', 1000 + $bound_ms,
	"the leases were back within lease_timeout + 2 intervals ($bound_ms ms) of the claim"
);

is( sql(q{
SELECT count(*), bool_and(state = 'waiting'), bool_and(attempt = 1),
	   bool_and(last_error = 'lease expired'), bool_and(lease_expires_at IS NULL)
  FROM immich_jobs.jobs WHERE queue_name = 'k'}),
	'10|t|t|t|t',
	'the 10 jobs are waiting again, attempt still 1, last_error "lease expired"');
is( sql(q{
SELECT sum(immich_jobs.complete(job_id, lease_token)::int) FROM doomed}),
	'0', 'the dead client\'s tokens do not complete the reclaimed jobs');

# another worker takes them: attempt + 1, new tokens
sql(q{
CREATE TABLE rescued AS
  SELECT job_id, lease_token, attempt FROM immich_jobs.claim('k', 'rescuer', 10);
});
is( sql(q{
SELECT count(*), bool_and(r.attempt = d.attempt + 1),
	   bool_and(r.lease_token <> d.lease_token)
  FROM rescued r JOIN doomed d USING (job_id)}),
	'10|t|t',
	'another worker claims the same 10 jobs, with attempt + 1 and new tokens');
is( sql(q{
SELECT sum(immich_jobs.complete(job_id, lease_token)::int),
	   count(immich_jobs.fail(job_id, lease_token, 'late')),
	   count(immich_jobs.heartbeat(job_id, lease_token)),
	   sum(immich_jobs.release(job_id, lease_token)::int)
  FROM doomed}),
	'0|0|0|0',
	'the dead client\'s tokens are refused by complete, fail, heartbeat and release'
);
is( sql(q{
SELECT sum(immich_jobs.complete(job_id, lease_token)::int) FROM rescued}),
	'10', 'the other worker completes all 10');
is( sql(q{
SELECT active, waiting, delayed, failed, completed
  FROM immich_jobs.queue_counts WHERE queue_name = 'k'}),
	'0|0|0|0|10',
	'queue_counts: 10 completed, nothing else');

#
# A lease that expires on the last attempt: the job ends failed.
# max_attempts 2: the first expiry gives it back, the second fails it.
#
sql(q{
SELECT immich_jobs.create_queue('last', lease_timeout => '1 second',
								max_attempts => 2);
SELECT immich_jobs.enqueue('last', 'crashes-its-worker');
CREATE TABLE last1 AS
  SELECT job_id, lease_token, attempt FROM immich_jobs.claim('last', 'w1');
});
ok( $node->poll_query_until(
		'postgres', q{
SELECT state || '|' || attempt || '|' || last_error
  FROM immich_jobs.jobs WHERE queue_name = 'last'}, 'waiting|1|lease expired'),
	'the first expired lease (attempt 1 of 2) gives the job back');
sql(q{
CREATE TABLE last2 AS
  SELECT job_id, lease_token, attempt, lease_expires_at
	FROM immich_jobs.claim('last', 'w2');
});
is(sql('SELECT attempt FROM last2'), '2', 'it is claimed again: attempt 2');
ok( $node->poll_query_until(
		'postgres', q{
SELECT state FROM immich_jobs.jobs WHERE queue_name = 'last'}, 'failed'),
	'its second lease expires: the job ends failed');
is( sql(q{
SELECT j.attempt, j.last_error, j.finished_at IS NOT NULL,
	   j.lease_expires_at IS NULL
  FROM immich_jobs.jobs j WHERE queue_name = 'last'}),
	'2|lease expired|t|t',
	'failed at attempt 2 with last_error "lease expired" and finished_at set');
# finished_at is the time of the reaper's round (its transaction's now())
my $failed_after_ms = sql(q{
SELECT round(extract(epoch FROM j.finished_at - l.lease_expires_at) * 1000)
  FROM immich_jobs.job j JOIN last2 l USING (job_id)});
note "the last lease was reclaimed ${failed_after_ms} ms after it expired";
cmp_ok($failed_after_ms, '>=', 0, 'not before the lease expired');
cmp_ok($failed_after_ms, '<=', $bound_ms,
	'within 2 intervals of the expiry');
is( sql(q{
SELECT immich_jobs.complete(job_id, lease_token) FROM last2}),
	'f', 'the last worker\'s token is refused');
is( sql(q{
SELECT active, waiting, failed, completed
  FROM immich_jobs.queue_counts WHERE queue_name = 'last'}),
	'0|0|1|0', 'queue_counts: 1 failed');

#
# A delayed job comes due: the reaper makes it waiting and wakes a LISTENing
# client, while nobody claims or enqueues.
#
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN immich_jobs');
sql("SELECT immich_jobs.create_queue('later')");
my $delayed_id = sql(q{
SELECT immich_jobs.enqueue('later', 'in-two-seconds',
						   run_at => now() + interval '2 seconds')});
my $run_at = sql(
	"SELECT extract(epoch FROM run_at) FROM immich_jobs.job WHERE job_id = $delayed_id"
);
# the waiter protocol: a worker's claim on the queue comes back empty, then
# it waits for the NOTIFY
is(sql("SELECT count(*) FROM immich_jobs.claim('later', 'early')"),
	'0', 'before its time, the delayed job cannot be claimed');
is( sql("SELECT state FROM immich_jobs.jobs WHERE job_id = $delayed_id"),
	'delayed', 'it is delayed');

# The listener runs an empty query every 10 ms (psql prints notifications
# after each command) until the NOTIFY for "later" has arrived.
my $woken;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
my $seen = '';
while (time < $deadline)
{
	$seen .= $listener->query_safe('SELECT');
	if ($seen =~
		/Asynchronous notification "immich_jobs" with payload "later" received/)
	{
		$woken = time;
		last;
	}
	usleep(10_000);
}
ok(defined $woken, 'the LISTENing client got NOTIFY immich_jobs, \'later\'')
  or $woken = time;
my $woken_ms = int(($woken - $run_at) * 1000);
note "the listener was woken $woken_ms ms after run_at";
cmp_ok($woken_ms, '>=', 0, 'not before run_at');
cmp_ok($woken_ms, '<=', $bound_ms, 'within 2 intervals of run_at');
is( sql("SELECT state FROM immich_jobs.jobs WHERE job_id = $delayed_id"),
	'waiting', 'the reaper made the job waiting (no claim has run since)');
is( sql("SELECT job_id || '|' || attempt FROM immich_jobs.claim('later', 'woken')"),
	"$delayed_id|1", 'the woken client claims it');
$listener->quit;

#
# A reload changes the interval.  Each round sets the reaper's query_start
# in pg_stat_activity; the time between two rounds is at least the interval.
#
my $watcher = $node->background_psql('postgres');

# the start times of the next $n rounds of the reaper, in seconds
sub next_rounds
{
	my ($n) = @_;
	my @starts;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (@starts < $n)
	{
		die 'timed out watching the reaper' if time > $deadline;
		my $start = $watcher->query_safe(q{
SELECT extract(epoch FROM query_start) FROM pg_stat_activity
 WHERE backend_type = 'immich_jobs reaper' AND datname = 'postgres'});
		$start =~ s/\n+\z//;    # 16.2's BackgroundPsql leaves a newline
		push @starts, $start
		  if $start ne '' && (!@starts || $start != $starts[-1]);
		usleep(10_000);
	}
	return @starts;
}

# the gaps between consecutive rounds, in ms
sub gaps
{
	my @s = @_;
	return map { int(($s[$_] - $s[ $_ - 1 ]) * 1000) } 1 .. $#s;
}

my @gaps = gaps(next_rounds(4));
note "rounds at ${interval_ms}ms: gaps of @gaps ms";
cmp_ok((sort { $b <=> $a } @gaps)[0], '<', 1000,
	"with reaper_interval = ${interval_ms}ms, rounds come less than 1 s apart");

$node->append_conf('postgresql.conf', 'immich_jobs.reaper_interval = 2s');
$node->reload;
ok( $node->poll_query_until(
		'postgres', 'SHOW immich_jobs.reaper_interval', '2s'),
	'after the reload, SHOW says 2s');
# The first round seen may have started before the reaper took the reload;
# every round after it waits the new interval.
my @starts = next_rounds(3);
@gaps = gaps(@starts[ 1 .. 2 ]);
note "rounds after the reload to 2s: gaps of @{[ gaps(@starts) ]} ms";
cmp_ok($gaps[0], '>=', 2000,
	'after the reload, the rounds come 2 s apart: the new interval is in effect');

# back to 200ms, which the reaper takes at once (the reload wakes it)
$node->append_conf('postgresql.conf',
	"immich_jobs.reaper_interval = ${interval_ms}ms");
$node->reload;
ok( $node->poll_query_until(
		'postgres', 'SHOW immich_jobs.reaper_interval', "${interval_ms}ms"),
	"reloaded back to ${interval_ms}ms");
@starts = next_rounds(4);
@gaps = gaps(@starts[ 1 .. 3 ]);
note "rounds after the reload back: gaps of @{[ gaps(@starts) ]} ms";
cmp_ok((sort { $b <=> $a } @gaps)[0], '<', 1000,
	'and the rounds come less than 1 s apart again');

#
# Bad values: refused, with a clear message, and the old ones stay.
#
($ret, $stdout, $stderr) =
  $node->psql('postgres',
	'ALTER SYSTEM SET immich_jobs.reaper_interval = 5');
like(
	$stderr,
	qr/ERROR:  5 ms is outside the valid range for parameter "immich_jobs.reaper_interval" \(10(?: ms)? .. 3600000(?: ms)?\)/,
	'ALTER SYSTEM refuses reaper_interval = 5 with the valid range');
($ret, $stdout, $stderr) =
  $node->psql('postgres',
	"ALTER SYSTEM SET immich_jobs.databases = 'a,,b'");
like(
	$stderr,
	qr/ERROR:  invalid value for parameter "immich_jobs.databases": "a,,b"\nDETAIL:  List syntax is invalid/,
	'ALTER SYSTEM refuses databases = \'a,,b\' with a DETAIL saying why');

# the same values in postgresql.conf, then a reload: the postmaster logs
# why it ignores them
$log_offset = -s $node->logfile;
$node->append_conf(
	'postgresql.conf', q{
immich_jobs.reaper_interval = 5
immich_jobs.databases = 'a,,b'
});
$node->reload;
$node->wait_for_log(qr/configuration file ".*" contains errors/, $log_offset);
my $log = slurp_file($node->logfile, $log_offset);
like(
	$log,
	qr/LOG:  5 ms is outside the valid range for parameter "immich_jobs.reaper_interval" \(10(?: ms)? .. 3600000(?: ms)?\)/,
	'the log says why reaper_interval = 5 is refused');
like(
	$log,
	qr/LOG:  invalid value for parameter "immich_jobs.databases": "a,,b"\n.*DETAIL:  List syntax is invalid: give "\*" or database names separated by commas\./,
	'the log says why databases = \'a,,b\' is refused');
is(sql('SHOW immich_jobs.reaper_interval'),
	"${interval_ms}ms", 'reaper_interval keeps its old value');
is(sql('SHOW immich_jobs.databases'), '*', 'databases keeps its old value');
@starts = next_rounds(4);
@gaps = gaps(@starts[ 1 .. 3 ]);
note "rounds after the bad reload: gaps of @{[ gaps(@starts) ]} ms";
cmp_ok((sort { $b <=> $a } @gaps)[0], '<', 1000,
	'the reaper goes on at the old interval');
$watcher->quit;

# and it still reclaims
sql(q{
SELECT immich_jobs.enqueue('k', 'after-bad-reload');
SELECT count(*) FROM immich_jobs.claim('k', 'w3');
});
ok( $node->poll_query_until(
		'postgres', q{
SELECT state || '|' || last_error FROM immich_jobs.jobs
 WHERE queue_name = 'k'}, 'waiting|lease expired'),
	'the reaper still reclaims an expired lease after the refused reload');

$node->stop;

done_testing();
