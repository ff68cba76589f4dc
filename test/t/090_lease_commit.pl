# immich_jobs.synchronous_lease_commit = off, library preloaded:
#
# 1. Which commits wait for the WAL flush: a transaction whose only writes
#    were made by lease functions does not; one that also enqueued, or wrote
#    a table of its own (before, between or after the lease calls), does; so
#    does everything with the setting on.  Checked right after each commit:
#    the WAL flush position is behind the insert position only after an
#    asynchronous commit (the WAL writer, with wal_writer_delay = 10s, stays
#    out of the way).
# 2. A claim lost in a crash: after the restart the job is waiting again, and
#    its next lease gets a token far beyond any handed out before the crash,
#    so the lost worker's token is refused.
# 3. A completion lost in a crash: the job is active again under the same
#    lease, and completing it again with that token works (what the Node
#    client does after a reconnect).
# 4. Without the preload the setting changes nothing.
#
# A crash loses an asynchronous commit only if the WAL writer has not
# flushed it yet; the tests retry until one was lost, and fail if none was.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('lease_commit');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.databases = ''
wal_writer_delay = 10s
autovacuum = off
# nothing else flushes WAL behind the test's back: no buffer is written out
# (writing a page out flushes the WAL up to its last change first)
shared_buffers = 128MB
bgwriter_lru_maxpages = 0
});
$node->start;

sub sql
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

sql(q{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
SELECT immich_jobs.create_queue('q', concurrency => 10000);
SELECT immich_jobs.enqueue_many('q',
	(SELECT jsonb_agg(jsonb_build_object('name', 'j')) FROM generate_series(1, 1000)));
CREATE TABLE mine (i int);
});

my $claim = q{SELECT job_id, lease_token FROM immich_jobs.claim('q', 'w') \gset
};
my $complete = q{SELECT immich_jobs.complete(:job_id, :lease_token);
};

# Run a transaction (its statements, without BEGIN and COMMIT) 10 times,
# each in a new session: how many times was its commit not flushed right
# after it?  Not flushed: the flush position is still behind where WAL was
# inserted just before the COMMIT.  (Other processes may write WAL of their
# own, but nothing flushes it but a synchronous commit.)
sub unflushed_commits
{
	my ($setting, $xact) = @_;
	my $n = 0;
	for (1 .. 10)
	{
		my $out = sql(
			qq{SET immich_jobs.synchronous_lease_commit = $setting;
BEGIN;
$xact
SELECT pg_catalog.pg_current_wal_insert_lsn() AS before_commit \\gset
COMMIT;
SELECT pg_catalog.pg_current_wal_flush_lsn() < :'before_commit';});
		$n++ if (split /\n/, $out)[-1] eq 't';
	}
	return $n;
}

cmp_ok(unflushed_commits('off', $claim), '>=', 5,
	'off: a claim does not wait for the flush');
cmp_ok(unflushed_commits('off', "$claim$complete"),
	'>=', 5, 'off: a claim and a complete in one transaction do not either');
cmp_ok(
	unflushed_commits(
		'off',
		q{SELECT count(*) FROM immich_jobs.complete_and_claim('q', 'w', 2);}),
	'>=', 5,
	'off: complete_and_claim does not either');
is(unflushed_commits('on', $claim), 0, 'on: every claim waits for the flush');
is(unflushed_commits('off', q{SELECT immich_jobs.enqueue('q', 'e');}),
	0, 'off: an enqueue waits for the flush');
is(unflushed_commits('off', "$claim SELECT immich_jobs.enqueue('q', 'e');"),
	0, 'off: a claim with an enqueue waits for the flush');
is(unflushed_commits('off', "INSERT INTO mine VALUES (1);\n$claim"),
	0, 'off: a write before the claim makes it wait');
is(unflushed_commits('off', "$claim INSERT INTO mine VALUES (1);"),
	0, 'off: a write after the claim makes it wait');
is(unflushed_commits('off', "$claim INSERT INTO mine VALUES (1);\n$complete"),
	0, 'off: a write between two lease calls makes it wait');
is(sql('SELECT count(*) FROM mine'), 30, 'the writes committed');

# Crash right after an asynchronous transaction, until one was lost (the WAL
# writer may have flushed it first).  $try runs it and returns the job's id
# and token; $lost->($id, $token) says whether the restart lost it.  Returns
# the id and the token of the one lost.
sub crash_until_lost
{
	my ($try, $lost) = @_;
	for (1 .. 20)
	{
		sql('CHECKPOINT');
		my ($id, $token) = $try->();
		$node->stop('immediate');
		$node->start;
		return ($id, $token) if $lost->($id, $token);
	}
	return;
}

sub job_state
{
	my ($id) = @_;
	return sql("SELECT state FROM immich_jobs.jobs WHERE job_id = $id");
}

sub claim_one
{
	my ($setting) = @_;
	return split /\|/,
	  sql(  "SET immich_jobs.synchronous_lease_commit = $setting;\n"
		  . q{SELECT job_id, lease_token FROM immich_jobs.claim('q', 'w')});
}

sql(q{SELECT immich_jobs.clear('q', 'waiting')});
sql(q{SELECT immich_jobs.enqueue('q', 'crash' || i) FROM generate_series(1, 20) i});

# 2. a lost claim: the job is waiting again, and its next lease has a new
# token.  The token sequence logs 32 values ahead, and the record that
# handed the lost token out may itself be lost (when the crash also took it;
# the WAL writer may have flushed it with the pages before the commit): the
# sequence, replayed, would then hand the same value out again, to the same
# job, first in line.  So after every start the extension moves the
# sequence 2^32 values on, flushed before any lease is taken.
my ($id, $token) = crash_until_lost(sub { claim_one('off') },
	sub { job_state($_[0]) eq 'waiting' });
ok(defined $id, 'a crash lost an asynchronous claim');
my ($id2, $token2) = claim_one('on');
is($id2, $id, 'the job of the lost claim is claimed again');
cmp_ok($token2, '>', $token + 2**31,
	'with a token far beyond any handed out before the crash');
is(sql("SELECT immich_jobs.complete($id, $token)"),
	'f', 'the lost token is refused');
is(sql("SELECT immich_jobs.complete($id, $token2)"),
	't', 'the new one completes the job');

# 3. a lost completion of a durable lease: the job is active again
($id, $token) = crash_until_lost(
	sub {
		my ($id, $token) = claim_one('on');
		sql(    "SET immich_jobs.synchronous_lease_commit = off;\n"
			  . "SELECT immich_jobs.complete($id, $token)");
		return ($id, $token);
	},
	sub { job_state($_[0]) eq 'active' });
ok(defined $id, 'a crash lost an asynchronous completion');
is(sql("SELECT immich_jobs.complete($id, $token)"),
	't', 'completing it again with the same token works');
sql(q{SELECT immich_jobs.complete(job_id, lease_token) FROM immich_jobs.job
	   WHERE state = 'a'});
is( sql(
		q{SELECT count(*) FROM immich_jobs.jobs WHERE queue_name = 'q' AND state = 'active'}
	),
	sql(q{SELECT active FROM immich_jobs.queue_counts WHERE queue_name = 'q'}),
	'counts are exact after the crashes');

# 4. without the preload the setting changes nothing
# (append_conf, not adjust_conf: 14's PostgresNode has no adjust_conf; the
# last setting in the file wins)
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->restart;
sql(q{SELECT immich_jobs.enqueue_many('q',
	(SELECT jsonb_agg(jsonb_build_object('name', 'j')) FROM generate_series(1, 20)))});
is(unflushed_commits('off', $claim), 0,
	'without the preload, claims wait for the flush');

$node->stop;
done_testing();
