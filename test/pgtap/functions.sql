--
-- functions.sql: the functions of the SQL interface (the README's reference:
-- the starting contract's, complete_and_claim, new in 1.1, and what 1.2
-- added for Immich: enqueue's dedup_mode, drain, cancel_by_key, job_counts).
--
-- Each contract function exists with its exact signature: argument names,
-- types, order and defaults (pg_get_function_arguments, compared with the
-- contract's text as PostgreSQL prints it), return type, and claim's result
-- columns.  Each one is SECURITY DEFINER, VOLATILE, written in C, not STRICT
-- (the contract gives meaning to NULL arguments: defaults or SQLSTATE 22004),
-- and documented with a comment.  The expectations are written from the
-- contract, not from the install script.
--
BEGIN;

SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

-- interval defaults print as '00:05:00' in this style, whatever the server's
SET LOCAL IntervalStyle = postgres;

-- The contract's functions.  args: argument types as PostgreSQL names them
-- (pgTAP compares some of them as text); arguments: the signature as
-- pg_get_function_arguments() prints it; returns: as pgTAP's
-- function_returns() expects it.
CREATE TEMP TABLE contract_function (
    ord         serial,
    name        name NOT NULL,
    args        name[] NOT NULL,
    arguments   text NOT NULL,
    returns     text NOT NULL
) ON COMMIT DROP;

INSERT INTO contract_function (name, args, arguments, returns) VALUES
    -- Queues
    ('create_queue',
     ARRAY['text', 'integer', 'interval', 'integer', 'interval', 'boolean'],
     'queue_name text, concurrency integer DEFAULT 1, '
     'lease_timeout interval DEFAULT ''00:05:00''::interval, max_attempts integer DEFAULT 3, '
     'retry_backoff interval DEFAULT ''00:00:30''::interval, if_not_exists boolean DEFAULT false',
     'void'),
    ('alter_queue',
     ARRAY['text', 'integer', 'interval', 'integer', 'interval'],
     'queue_name text, concurrency integer DEFAULT NULL::integer, '
     'lease_timeout interval DEFAULT NULL::interval, max_attempts integer DEFAULT NULL::integer, '
     'retry_backoff interval DEFAULT NULL::interval',
     'void'),
    ('set_concurrency', ARRAY['text', 'integer'],
     'queue_name text, concurrency integer', 'void'),
    ('pause_queue', ARRAY['text'], 'queue_name text', 'void'),
    ('resume_queue', ARRAY['text'], 'queue_name text', 'void'),
    ('drop_queue', ARRAY['text', 'boolean'],
     'queue_name text, force boolean DEFAULT false', 'void'),
    -- Enqueue
    -- (dedup_mode: 1.2)
    ('enqueue',
     ARRAY['text', 'text', 'jsonb', 'integer', 'timestamp with time zone', 'text', 'integer', 'text'],
     'queue_name text, job_name text, payload jsonb DEFAULT ''{}''::jsonb, '
     'priority integer DEFAULT 0, '
     'run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, '
     'dedup_key text DEFAULT NULL::text, max_attempts integer DEFAULT NULL::integer, '
     'dedup_mode text DEFAULT ''unstarted''::text',
     'bigint'),
    ('enqueue_many', ARRAY['text', 'jsonb'], 'queue_name text, jobs jsonb', 'bigint'),
    -- Work
    ('claim', ARRAY['text', 'text', 'integer'],
     'queue_name text, worker_id text, max_jobs integer DEFAULT 1', 'setof record'),
    ('complete', ARRAY['bigint', 'bigint'],
     'job_id bigint, lease_token bigint', 'boolean'),
    ('complete_many', ARRAY['bigint[]', 'bigint[]'],
     'job_ids bigint[], lease_tokens bigint[]', 'bigint'),
    -- 1.1
    ('complete_and_claim', ARRAY['text', 'text', 'integer', 'bigint[]', 'bigint[]'],
     'queue_name text, worker_id text, max_jobs integer, '
     'job_ids bigint[] DEFAULT ''{}''::bigint[], lease_tokens bigint[] DEFAULT ''{}''::bigint[]',
     'setof record'),
    ('fail', ARRAY['bigint', 'bigint', 'text', 'interval'],
     'job_id bigint, lease_token bigint, error text DEFAULT NULL::text, '
     'retry_in interval DEFAULT NULL::interval',
     'text'),
    ('heartbeat', ARRAY['bigint', 'bigint', 'interval'],
     'job_id bigint, lease_token bigint, extend_by interval DEFAULT NULL::interval',
     'timestamp with time zone'),
    ('release', ARRAY['bigint', 'bigint', 'timestamp with time zone'],
     'job_id bigint, lease_token bigint, '
     'run_at timestamp with time zone DEFAULT NULL::timestamp with time zone',
     'boolean'),
    ('reap', ARRAY[]::name[], '', 'integer'),
    -- Administer
    ('retry_failed', ARRAY['text'], 'queue_name text', 'bigint'),
    ('clear', ARRAY['text', 'text'],
     'queue_name text, state text DEFAULT ''waiting''::text', 'bigint'),
    ('cancel', ARRAY['bigint'], 'job_id bigint', 'boolean'),
    -- 1.2
    ('drain', ARRAY['text', 'boolean'],
     'queue_name text, delayed boolean DEFAULT false', 'bigint'),
    ('cancel_by_key', ARRAY['text', 'text'], 'queue_name text, dedup_key text', 'jsonb'),
    ('job_counts', ARRAY['text'],
     'queue_name text, OUT active bigint, OUT completed bigint, OUT failed bigint, '
     'OUT delayed bigint, OUT waiting bigint, OUT paused bigint',
     'record');

-- the function's oid, NULL if there is no function of that name and argument
-- types (the tests that use it then fail)
CREATE FUNCTION pg_temp.fn(name, name[]) RETURNS regprocedure
LANGUAGE sql STABLE AS
$$SELECT to_regprocedure(format('immich_jobs.%I(%s)', $1, array_to_string($2, ', ')))$$;

SELECT plan(185);

-- no function more and none less (_queue_counts is the views' internal
-- helper, _preloaded the install script's)
SELECT functions_are('immich_jobs',
    ARRAY['create_queue', 'alter_queue', 'set_concurrency', 'pause_queue', 'resume_queue',
          'drop_queue', 'enqueue', 'enqueue_many', 'claim', 'complete', 'complete_many',
          'complete_and_claim', 'fail', 'heartbeat', 'release', 'reap', 'retry_failed', 'clear', 'cancel',
          'drain', 'cancel_by_key', 'job_counts', '_queue_counts', '_preloaded']);

-- (each row-producing test reads an ordered subquery, so that the tests are
-- numbered in the order they are printed)

SELECT has_function('immich_jobs', name, args,
                    format('function immich_jobs.%s(%s) exists', name, array_to_string(args, ', ')))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

SELECT is(pg_get_function_arguments(pg_temp.fn(name, args)), arguments,
          format('immich_jobs.%s has the contract''s argument names, order and defaults', name))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

SELECT function_returns('immich_jobs', name, args, returns,
                        format('immich_jobs.%s returns %s', name, returns))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

SELECT is_definer('immich_jobs', name, args,
                  format('immich_jobs.%s is SECURITY DEFINER', name))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

SELECT volatility_is('immich_jobs', name, args, 'volatile',
                     format('immich_jobs.%s is VOLATILE', name))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

SELECT function_lang_is('immich_jobs', name, args, 'c',
                        format('immich_jobs.%s is written in C', name))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

SELECT isnt_strict('immich_jobs', name, args,
                   format('immich_jobs.%s is not STRICT', name))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

SELECT isnt(obj_description(pg_temp.fn(name, args), 'pg_proc'), NULL,
            format('immich_jobs.%s has a comment', name))
  FROM (SELECT * FROM contract_function ORDER BY ord) f;

-- claim's result columns
SELECT is(pg_get_function_result(pg_temp.fn('claim', ARRAY['text', 'text', 'integer'])),
          'TABLE(job_id bigint, job_name text, payload jsonb, attempt integer, '
          'lease_token bigint, lease_expires_at timestamp with time zone)',
          'immich_jobs.claim returns the contract''s columns, in order, with their types');
SELECT is(pg_get_function_result(pg_temp.fn('complete_and_claim',
                                            ARRAY['text', 'text', 'integer', 'bigint[]', 'bigint[]'])),
          'TABLE(job_id bigint, job_name text, payload jsonb, attempt integer, '
          'lease_token bigint, lease_expires_at timestamp with time zone)',
          'immich_jobs.complete_and_claim returns claim''s columns');

-- the internal helper follows the same rules as the contract's functions
SELECT is_definer('immich_jobs', '_queue_counts', ARRAY['integer'],
                  'immich_jobs._queue_counts is SECURITY DEFINER');
SELECT function_lang_is('immich_jobs', '_queue_counts', ARRAY['integer'], 'c',
                        'immich_jobs._queue_counts is written in C');
SELECT isnt(obj_description(pg_temp.fn('_queue_counts', ARRAY['integer']), 'pg_proc'), NULL,
            'immich_jobs._queue_counts has a comment');
SELECT function_returns('immich_jobs', '_preloaded', ARRAY[]::text[], 'boolean',
                        'immich_jobs._preloaded() returns boolean');
SELECT function_lang_is('immich_jobs', '_preloaded', ARRAY[]::text[], 'c',
                        'immich_jobs._preloaded is written in C');
SELECT isnt(obj_description(pg_temp.fn('_preloaded', ARRAY[]::text[]), 'pg_proc'), NULL,
            'immich_jobs._preloaded has a comment');

SELECT * FROM finish();
ROLLBACK;
