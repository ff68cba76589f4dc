--
-- schema.sql: what CREATE EXTENSION immich_jobs builds.
--
-- The extension, its schema, the storage tables (columns, types, NOT NULLs,
-- keys, partial indexes), the sequences, the two views of the contract (their
-- columns, in order, with their types), and the pg_dump registration of the
-- tables.  Everything runs in one transaction that is rolled back.
--
BEGIN;

SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

-- expected columns of the storage tables, in the order of the install script
-- (typ as col_type_is wants it: it quotes 'char' as format_type prints the
-- one-byte type, "char"; character(1) would not match)
CREATE TEMP TABLE expected_column (
    ord         serial,
    tbl         name NOT NULL,
    col         name NOT NULL,
    typ         text NOT NULL,
    not_null    boolean NOT NULL
) ON COMMIT DROP;

INSERT INTO expected_column (tbl, col, typ, not_null) VALUES
    ('queue', 'queue_id',         'integer',                  true),
    ('queue', 'queue_name',       'text',                     true),
    ('queue', 'concurrency',      'integer',                  true),
    ('queue', 'max_attempts',     'integer',                  true),
    ('queue', 'lease_timeout',    'interval',                 true),
    ('queue', 'retry_backoff',    'interval',                 true),
    ('queue', 'paused',           'boolean',                  true),
    ('queue', 'completed_base',   'bigint',                   true),
    ('queue', 'created_at',       'timestamp with time zone', true),
    ('job',   'job_id',           'bigint',                   true),
    ('job',   'lease_token',      'bigint',                   false),
    ('job',   'run_at',           'timestamp with time zone', true),
    ('job',   'created_at',       'timestamp with time zone', true),
    ('job',   'started_at',       'timestamp with time zone', false),
    ('job',   'finished_at',      'timestamp with time zone', false),
    ('job',   'lease_expires_at', 'timestamp with time zone', false),
    ('job',   'queue_id',         'integer',                  true),
    ('job',   'priority',         'integer',                  true),
    ('job',   'attempt',          'integer',                  true),
    ('job',   'max_attempts',     'integer',                  true),
    ('job',   'state',            'char',                     true),
    ('job',   'job_name',         'text',                     true),
    ('job',   'dedup_key',        'text',                     false),
    ('job',   'worker_id',        'text',                     false),
    ('job',   'last_error',       'text',                     false),
    ('job',   'payload',          'jsonb',                    true),
    ('job',   'dedup_kept',       'boolean',                  true),   -- 1.2
    ('completed_log', 'queue_id', 'integer',                  true),
    ('completed_log', 'n',        'integer',                  true);

-- the partial indexes of immich_jobs.job and the rows each one covers
CREATE TEMP TABLE expected_partial_index (
    ord         serial,
    idx         name NOT NULL,
    pred        text NOT NULL
) ON COMMIT DROP;

INSERT INTO expected_partial_index (idx, pred) VALUES
    ('job_claim_idx',    $$(state = 'w'::"char")$$),
    ('job_delayed_idx',  $$(state = 'd'::"char")$$),
    ('job_lease_idx',    $$(state = 'a'::"char")$$),
    ('job_finished_idx', $$(state = ANY (ARRAY['f'::"char", 'x'::"char"]))$$),
    ('job_dedup_idx',    $$((dedup_key IS NOT NULL) AND (started_at IS NULL) AND (state = ANY (ARRAY['w'::"char", 'd'::"char"])))$$),
    ('job_dedup_kept_idx', $$((dedup_key IS NOT NULL) AND dedup_kept AND (state = ANY (ARRAY['w'::"char", 'd'::"char", 'a'::"char", 'f'::"char"])))$$),
    ('job_key_idx',      $$(dedup_key IS NOT NULL)$$);

SELECT plan(103);

-- the extension and its schema

SELECT has_schema('immich_jobs');
SELECT has_extension('immich_jobs', 'immich_jobs',
                     'extension immich_jobs is installed in schema immich_jobs');
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'immich_jobs'),
          false, 'extension immich_jobs is not relocatable');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'immich_jobs'),
          '1.2', 'extension immich_jobs is at version 1.2');
SELECT is((SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'immich_jobs'),
          (SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'immich_jobs'),
          'schema immich_jobs is owned by the extension''s owner');

-- relations: exactly these, nothing more

SELECT tables_are('immich_jobs', ARRAY['queue', 'job', 'completed_log']);
SELECT views_are('immich_jobs', ARRAY['queue_counts', 'jobs']);
SELECT sequences_are('immich_jobs', ARRAY['queue_queue_id_seq', 'job_id_seq', 'lease_token_seq']);
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default", format_type(s.seqtypid, NULL)
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
       WHERE c.relnamespace = 'immich_jobs'::regnamespace
       ORDER BY 1$$,
    $$VALUES ('job_id_seq', 'bigint'), ('lease_token_seq', 'bigint'),
             ('queue_queue_id_seq', 'integer')$$,
    'the sequences have the types of the columns they feed');

-- table columns: the set, then each one's type and nullability

SELECT columns_are('immich_jobs', tbl, cols)
  FROM (SELECT tbl, array_agg(col ORDER BY ord) AS cols
          FROM expected_column GROUP BY tbl ORDER BY min(ord)) e;

SELECT col_type_is('immich_jobs', tbl, col, typ,
                   format('column immich_jobs.%s.%s is of type %s', tbl, col, typ))
  FROM (SELECT * FROM expected_column ORDER BY ord) e;

SELECT CASE WHEN not_null
            THEN col_not_null('immich_jobs', tbl, col,
                              format('column immich_jobs.%s.%s is NOT NULL', tbl, col))
            ELSE col_is_null('immich_jobs', tbl, col,
                             format('column immich_jobs.%s.%s allows NULL', tbl, col))
       END
  FROM (SELECT * FROM expected_column ORDER BY ord) e;

-- keys

SELECT col_is_pk('immich_jobs', 'queue', 'queue_id', 'queue_id is the primary key of immich_jobs.queue');
SELECT col_is_unique('immich_jobs', 'queue', 'queue_name', 'queue names are unique');
SELECT col_is_pk('immich_jobs', 'job', 'job_id', 'job_id is the primary key of immich_jobs.job');
SELECT hasnt_pk('immich_jobs', 'completed_log', 'immich_jobs.completed_log has no primary key');

-- indexes: exactly these; the job indexes other than the key are partial

SELECT indexes_are('immich_jobs', 'queue', ARRAY['queue_pkey', 'queue_queue_name_key']);
SELECT indexes_are('immich_jobs', 'job',
                   ARRAY['job_pkey', 'job_claim_idx', 'job_delayed_idx', 'job_lease_idx',
                         'job_finished_idx', 'job_dedup_idx', 'job_dedup_kept_idx', 'job_key_idx']);
SELECT indexes_are('immich_jobs', 'completed_log', ARRAY[]::name[]);
SELECT index_is_primary('immich_jobs', 'job', 'job_pkey', 'job_pkey is the primary key index');
SELECT index_is_unique('immich_jobs', 'job', 'job_dedup_idx', 'job_dedup_idx is unique');
SELECT index_is_unique('immich_jobs', 'job', 'job_dedup_kept_idx', 'job_dedup_kept_idx is unique');

SELECT ok(EXISTS (SELECT FROM pg_index i
                   WHERE i.indexrelid = to_regclass('immich_jobs.' || e.idx)
                     AND i.indpred IS NOT NULL),
          format('index immich_jobs.%s is partial', e.idx))
  FROM (SELECT * FROM expected_partial_index ORDER BY ord) e;

SELECT is((SELECT pg_get_expr(i.indpred, i.indrelid) FROM pg_index i
            WHERE i.indexrelid = to_regclass('immich_jobs.' || e.idx)),
          e.pred,
          format('index immich_jobs.%s covers %s', e.idx, e.pred))
  FROM (SELECT * FROM expected_partial_index ORDER BY ord) e;

SELECT ok(EXISTS (SELECT FROM pg_index i
                   WHERE i.indexrelid = to_regclass('immich_jobs.' || x.idx)
                     AND i.indpred IS NULL),
          format('index immich_jobs.%s is not partial', x.idx))
  FROM (VALUES ('queue_pkey'), ('queue_queue_name_key'), ('job_pkey')) x(idx);

-- the views: exactly the contract's columns, in order, with their types

SELECT results_eq(
    $$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod)
        FROM pg_attribute
       WHERE attrelid = 'immich_jobs.queue_counts'::regclass
         AND attnum > 0 AND NOT attisdropped
       ORDER BY attnum$$,
    $$VALUES ('queue_name', 'text'),
             ('paused', 'boolean'),
             ('concurrency', 'integer'),
             ('active', 'bigint'),
             ('waiting', 'bigint'),
             ('delayed', 'bigint'),
             ('failed', 'bigint'),
             ('completed', 'bigint')$$,
    'view immich_jobs.queue_counts has the contract''s columns, in order, with their types');

SELECT results_eq(
    $$SELECT attname::text COLLATE "default", format_type(atttypid, atttypmod)
        FROM pg_attribute
       WHERE attrelid = 'immich_jobs.jobs'::regclass
         AND attnum > 0 AND NOT attisdropped
       ORDER BY attnum$$,
    $$VALUES ('job_id', 'bigint'),
             ('queue_name', 'text'),
             ('job_name', 'text'),
             ('state', 'text'),
             ('priority', 'integer'),
             ('attempt', 'integer'),
             ('max_attempts', 'integer'),
             ('run_at', 'timestamp with time zone'),
             ('created_at', 'timestamp with time zone'),
             ('started_at', 'timestamp with time zone'),
             ('finished_at', 'timestamp with time zone'),
             ('worker_id', 'text'),
             ('lease_expires_at', 'timestamp with time zone'),
             ('last_error', 'text'),
             ('dedup_key', 'text'),
             ('payload', 'jsonb')$$,
    'view immich_jobs.jobs has the contract''s columns, in order, with their types');

-- pg_dump: the tables (and the sequences that feed them) are data, dumped in
-- full (empty condition)

SELECT ok(to_regclass('immich_jobs.' || t) = ANY (e.extconfig),
          format('immich_jobs.%s is registered with pg_extension_config_dump', t))
  FROM (SELECT extconfig FROM pg_extension WHERE extname = 'immich_jobs') e,
       unnest(ARRAY['queue', 'job', 'completed_log']) AS t;

SELECT set_eq(
    $$SELECT c::regclass::text, cond
        FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, cond)
       WHERE e.extname = 'immich_jobs'$$,
    $$VALUES ('immich_jobs.queue', ''), ('immich_jobs.queue_queue_id_seq', ''),
             ('immich_jobs.job', ''), ('immich_jobs.job_id_seq', ''),
             ('immich_jobs.lease_token_seq', ''), ('immich_jobs.completed_log', '')$$,
    'pg_dump dumps every row of the tables and the sequences of the extension');

SELECT * FROM finish();
ROLLBACK;
