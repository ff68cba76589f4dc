# ALTER EXTENSION immich_jobs UPDATE from every earlier version (1.0 and
# 1.1), against a fresh install of the latest (1.2):
#
# 1. A database created at the old version, holding queues and jobs (one of
#    them leased, one with a dedup key), is updated while the library is
#    preloaded.  Its schema is then the same as a fresh install's, object
#    for object: functions (arguments, results, attributes, privileges,
#    comments), tables, columns, indexes, constraints, views, sequences,
#    what pg_dump keeps, and what belongs to the extension.  (CREATE
#    EXTENSION runs the same scripts, 1.0 then the updates, so this finds
#    what differs only when the database being updated is in use;
#    test/pgtap checks both kinds of database against the interface the
#    README specifies.)
# 2. The jobs are still there and the lease still holds: complete_and_claim
#    completes the job leased before the update and claims the next one,
#    the old dedup key still blocks as before, the new mode works, and the
#    counts are exact.
# 3. An application role granted EXECUTE before is not given the new
#    functions by the update (nothing new is open to anyone), and is after
#    the GRANT that the README tells the administrator to run again; it
#    keeps enqueue, which 1.2 replaces, through the update.
# 4. Before the update, the new library serves the old objects: enqueue
#    with its old arguments works, and dedup mode 'kept' is refused with an
#    error that says to update.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'immich_jobs'
immich_jobs.reaper_interval = 100ms
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
$node->safe_psql(
	'fresh', q{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
});
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'immich_jobs'}),
	'1.2', 'a fresh install is at 1.2');

# Everything about the schema, one line per object; no OIDs, so that two
# databases can be compared.
my %describe = (
	'functions' => q{
SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> '
       || pg_get_function_result(p.oid)
       || ' ' || p.prosecdef || ' ' || p.provolatile::text || ' ' || p.proisstrict
       || ' ' || p.proretset || ' ' || p.prorows || ' ' || l.lanname
       || ' ' || coalesce(p.prosrc, '') || ' ' || coalesce(p.probin, '')
       || ' acl=' || coalesce(array_to_string(p.proacl, ','), 'default')
       || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'immich_jobs'::regnamespace ORDER BY 1},
	'relations' => q{
SELECT c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text
       || ' opts=' || coalesce(array_to_string(c.reloptions, ','), '')
       || ' acl=' || coalesce(array_to_string(c.relacl, ','), 'default')
       || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
  FROM pg_class c WHERE c.relnamespace = 'immich_jobs'::regnamespace ORDER BY 1},
	'columns' => q{
SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' ' || a.attnotnull || ' ' || a.attidentity::text || ' ' || a.attnum
       || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'immich_jobs'::regnamespace AND a.attnum > 0
   AND NOT a.attisdropped ORDER BY 1},
	'indexes' => q{
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
  JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = 'immich_jobs'::regnamespace ORDER BY 1},
	'constraints' => q{
SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'immich_jobs'::regnamespace ORDER BY 1},
	'views' => q{
SELECT c.relname || ': ' || pg_get_viewdef(c.oid) FROM pg_class c
 WHERE c.relnamespace = 'immich_jobs'::regnamespace AND c.relkind = 'v' ORDER BY 1},
	'sequences' => q{
SELECT s.seqrelid::regclass || ' ' || format_type(s.seqtypid, NULL) || ' '
       || s.seqincrement || ' ' || s.seqmin || ' ' || s.seqmax || ' ' || s.seqcache
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.relnamespace = 'immich_jobs'::regnamespace ORDER BY 1},
	'dumped' => q{
SELECT c.rel::regclass || ' ' || coalesce(c.cond, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(rel, cond)
 WHERE e.extname = 'immich_jobs' ORDER BY 1},
	'members' => q{
SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'immich_jobs')
 ORDER BY 1});

for my $from ('1.0', '1.1')
{
	my $db = 'from_' . ($from =~ s/\./_/r);

	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql(
		$db, qq{
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs VERSION '$from';
GRANT USAGE ON SCHEMA immich_jobs TO app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA immich_jobs TO app;
SELECT immich_jobs.create_queue('q', concurrency => 1);
SELECT immich_jobs.enqueue('q', 'j' || i) FROM generate_series(1, 3) i;
SELECT immich_jobs.enqueue('q', 'keyed', dedup_key => 'k');
});
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'immich_jobs'}),
		$from, "installed at $from");
	my ($id, $token) = split /\|/,
	  $node->safe_psql($db,
		q{SELECT job_id, lease_token FROM immich_jobs.claim('q', 'w')},
		connstr => "dbname=$db user=app");
	ok($token, "$from: the application role leased a job");

	# 4. the 1.2 library on the old objects
	is( $node->safe_psql(
			$db, q{SELECT immich_jobs.enqueue('q', 'keyed', dedup_key => 'k')
				    = (SELECT job_id FROM immich_jobs.jobs WHERE dedup_key = 'k')}),
		't', "$from: before the update, enqueue with its old arguments dedups as before");
	my ($ret, $out, $err) = $node->psql($db,
		q{SELECT immich_jobs.enqueue_many('q', '[{"name": "x", "dedup_key": "n", "dedup_mode": "kept"}]')});
	like($err, qr/dedup mode "kept" needs version 1\.2 of extension "immich_jobs".*\n.*ALTER EXTENSION immich_jobs UPDATE/,
		"$from: before the update, dedup mode 'kept' says to update");

	$node->safe_psql($db, 'ALTER EXTENSION immich_jobs UPDATE');
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'immich_jobs'}),
		'1.2', "$from: updated to 1.2");
	# enqueue is a new function in 1.2 (a new argument): its grants move over
	ok( $node->safe_psql($db, q{SELECT immich_jobs.enqueue('q', 'after update') > 0},
			connstr => "dbname=$db user=app") eq 't',
		"$from: the application role still enqueues right after the update");

	# 1. the schema
	for my $what (sort keys %describe)
	{
		my $fresh = $node->safe_psql('fresh', $describe{$what});
		my $updated = $node->safe_psql($db, $describe{$what});
		# a grant to app is the only difference the updated database may have
		$updated =~ s/,app=X\/\w+//g;
		isnt($fresh, '', "$from: $what: described");
		is($updated, $fresh, "$from: $what: the update gives what a fresh install has");
	}

	# 2. the jobs and the lease survive; the new functions work on them
	is( $node->safe_psql(
			$db,
			qq{SELECT count(*) FILTER (WHERE job_name IS NOT NULL) || ' '
			          || count(*) FILTER (WHERE job_name IS NULL)
			     FROM immich_jobs.complete_and_claim('q', 'w', 1, ARRAY[$id], ARRAY[$token])}),
		'1 0',
		"$from: complete_and_claim completes the job leased before the update and claims the next");
	is( $node->safe_psql(
			$db, q{SELECT immich_jobs.enqueue('q', 'keyed', dedup_key => 'k')
				    = (SELECT job_id FROM immich_jobs.jobs WHERE dedup_key = 'k')}),
		't', "$from: the key enqueued before the update still blocks");
	is( $node->safe_psql(
			$db, q{
SELECT immich_jobs.enqueue('q', 'kept', dedup_key => 'm', dedup_mode => 'kept')
     = immich_jobs.enqueue('q', 'kept', dedup_key => 'm', dedup_mode => 'kept')}),
		't', "$from: dedup mode 'kept' works after the update");
	is( $node->safe_psql(
			$db,
			q{SELECT active || ' ' || waiting || ' ' || completed
				FROM immich_jobs.queue_counts WHERE queue_name = 'q'}),
		'1 4 1',
		"$from: the counts are exact");

	# 3. privileges
	($ret, $out, $err) = $node->psql($db,
		q{SELECT immich_jobs.cancel_by_key('q', 'm')},
		connstr => "dbname=$db user=app");
	like($err, qr/permission denied for function cancel_by_key/,
		"$from: the update grants nothing to the application role");
	$node->safe_psql($db,
		'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA immich_jobs TO app');
	is( $node->safe_psql(
			$db, q{SELECT immich_jobs.cancel_by_key('q', 'm')},
			connstr => "dbname=$db user=app"),
		'{}',
		"$from: after the README's GRANT it may call it");
}

$node->stop;
done_testing();
