--
-- enqueue_many: every key, JSON null as "not given", array order, dedup
-- keys, the count it returns, 100,000 jobs in one call, all or nothing, and
-- every kind of malformed input.
--
-- Every queue of this file is named 'many.*'; all files share one database.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS immich_jobs;
RESET client_min_messages;

CREATE TEMP VIEW counts AS
    SELECT * FROM immich_jobs.queue_counts
     WHERE queue_name LIKE 'many.%' ORDER BY queue_name;
CREATE TEMP TABLE held (job_id bigint, job_name text, payload jsonb,
                        attempt integer, lease_token bigint,
                        lease_expires_at timestamptz);
-- run a statement; return 'ok', or its error: SQLSTATE, message and detail
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' ' || SQLERRM
           || CASE WHEN detail <> '' THEN ' / ' || detail ELSE '' END;
END $$;

SELECT immich_jobs.create_queue('many.q', concurrency => 100, max_attempts => 7);

--
-- every key
--
SELECT immich_jobs.enqueue_many('many.q', $$[
  {"name": "all", "payload": {"assetId": "a1", "n": [1, 2]}, "priority": 3,
   "run_at": "2999-01-01T00:00:00Z", "dedup_key": "key-all", "max_attempts": 2}
]$$) AS added;
SELECT job_name, state, priority, attempt, max_attempts,
       run_at = '2999-01-01 00:00:00+00' AS run_at_2999, dedup_key, payload
  FROM immich_jobs.jobs WHERE queue_name = 'many.q' ORDER BY job_id;
SELECT * FROM counts;
SELECT immich_jobs.clear('many.q');

--
-- a JSON null is "not given": payload {}, priority 0, run now, no dedup key,
-- the queue's max_attempts; the same as leaving the keys out
--
SELECT immich_jobs.enqueue_many('many.q', $$[
  {"name": "nulls", "payload": null, "priority": null, "run_at": null,
   "dedup_key": null, "max_attempts": null},
  {"name": "absent"}
]$$) AS added;
SELECT job_name, state, priority, max_attempts, dedup_key, payload
  FROM immich_jobs.jobs WHERE queue_name = 'many.q' ORDER BY job_id;
-- ... but a payload that is not null is kept as it is, scalars included
SELECT immich_jobs.enqueue_many('many.q', $$[
  {"name": "p1", "payload": 1}, {"name": "p2", "payload": "s"},
  {"name": "p3", "payload": [null]}, {"name": "p4", "payload": false},
  {"name": "p5", "payload": {}}
]$$) AS added;
SELECT job_name, payload FROM immich_jobs.jobs
 WHERE queue_name = 'many.q' AND job_name LIKE 'p_' ORDER BY job_id;
SELECT immich_jobs.clear('many.q');

--
-- run_at: a past timestamp string is waiting, a future one delayed; the
-- string is read as timestamptz reads it (infinity is refused: limits.sql)
--
SELECT immich_jobs.enqueue_many('many.q', $$[
  {"name": "past", "run_at": "2000-01-01 00:00:00+00"},
  {"name": "future", "run_at": "2999-06-01 12:00:00+02"},
  {"name": "epoch", "run_at": "epoch"},
  {"name": "last", "run_at": "294276-12-31 23:59:59+00"}
]$$) AS added;
SELECT job_name, state, run_at = '2000-01-01 00:00:00+00' AS is_2000,
       run_at = '2999-06-01 10:00:00+00' AS is_2999,
       run_at = 'epoch' AS is_epoch, run_at = '294276-12-31 23:59:59+00' AS is_last
  FROM immich_jobs.jobs WHERE queue_name = 'many.q' ORDER BY job_id;
SELECT * FROM counts;
SELECT immich_jobs.clear('many.q');

--
-- the order of the array is the enqueue order; priority still comes first
--
SELECT immich_jobs.enqueue_many('many.q', $$[
  {"name": "o1"}, {"name": "o2", "priority": 1}, {"name": "o3"},
  {"name": "o4", "dedup_key": "o4"}, {"name": "o5"},
  {"name": "o6", "priority": 1, "dedup_key": "o6"}, {"name": "o7"},
  {"name": "o8", "priority": -1}
]$$) AS added;
SELECT job_name FROM immich_jobs.jobs
 WHERE queue_name = 'many.q' ORDER BY job_id;
INSERT INTO held SELECT * FROM immich_jobs.claim('many.q', 'w1', 100)
RETURNING job_name;
SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token))
  FROM held;
TRUNCATE held;

--
-- dedup keys: inside one call the first element with a key wins; a key that
-- a job not yet started has adds nothing; the count says what was added
--
SELECT immich_jobs.enqueue('many.q', 'existing', dedup_key => 'old') AS old_id \gset
SELECT immich_jobs.enqueue_many('many.q', $$[
  {"name": "first", "dedup_key": "new", "payload": {"v": 1}},
  {"name": "second", "dedup_key": "new", "payload": {"v": 2}},
  {"name": "again", "dedup_key": "old"},
  {"name": "plain"},
  {"name": "third", "dedup_key": "new", "priority": 5}
]$$) AS added;
SELECT job_id = :old_id AS is_old, job_name, dedup_key, payload, priority
  FROM immich_jobs.jobs WHERE queue_name = 'many.q' ORDER BY job_id;
SELECT * FROM counts;
-- only duplicates: nothing added
SELECT immich_jobs.enqueue_many('many.q',
       '[{"name": "x", "dedup_key": "old"}, {"name": "y", "dedup_key": "new"}]')
       AS added;
-- an empty array adds nothing
SELECT immich_jobs.enqueue_many('many.q', '[]') AS added;
SELECT * FROM counts;
SELECT immich_jobs.clear('many.q');

--
-- 100,000 jobs in one call (batches of many rows underneath): every one is
-- there, in array order, and counted
--
SELECT immich_jobs.create_queue('many.big', concurrency => 3);
SELECT immich_jobs.enqueue_many('many.big',
         (SELECT jsonb_agg(jsonb_build_object('name', 'bulk',
                                              'payload', jsonb_build_object('i', i))
                           ORDER BY i)
            FROM generate_series(1, 100000) i)) AS added;
SELECT * FROM counts WHERE queue_name = 'many.big';
SELECT count(*) AS jobs, count(DISTINCT job_id) AS ids,
       min((payload->>'i')::int) AS min_i, max((payload->>'i')::int) AS max_i,
       count(*) FILTER (WHERE state <> 'waiting') AS not_waiting
  FROM immich_jobs.jobs WHERE queue_name = 'many.big';
-- job ids follow the array
SELECT count(*) AS out_of_order
  FROM (SELECT (payload->>'i')::int AS i,
               lag((payload->>'i')::int) OVER (ORDER BY job_id) AS prev
          FROM immich_jobs.jobs WHERE queue_name = 'many.big') s
 WHERE i <> prev + 1;
-- claims take them from the front, never more than the concurrency
INSERT INTO held SELECT * FROM immich_jobs.claim('many.big', 'w1', 10)
RETURNING job_name, payload, attempt;
SELECT * FROM counts WHERE queue_name = 'many.big';

--
-- all or nothing: element 99999 of a 100,000-element array is bad; the
-- error names it, and nothing of the call is added (not even the 99,999
-- good elements before it, nor the one with a dedup key)
--
SELECT immich_jobs.enqueue_many('many.big',
         (SELECT jsonb_agg(CASE WHEN i = 99999 THEN jsonb_build_object('name', 5)
                                WHEN i = 7 THEN jsonb_build_object('name', 'keyed',
                                                                   'dedup_key', 'k7')
                                ELSE jsonb_build_object('name', 'doomed') END
                           ORDER BY i)
            FROM generate_series(0, 99999) i));
-- the same with a run_at that does not parse: timestamptz's own error, and
-- the element in the CONTEXT
SELECT immich_jobs.enqueue_many('many.big',
         (SELECT jsonb_agg(CASE WHEN i = 99999
                                THEN jsonb_build_object('name', 'x', 'run_at', 'soon')
                                ELSE jsonb_build_object('name', 'doomed') END
                           ORDER BY i)
            FROM generate_series(0, 99999) i));
SELECT * FROM counts WHERE queue_name = 'many.big';
SELECT count(*) AS doomed_or_keyed FROM immich_jobs.jobs
 WHERE queue_name = 'many.big' AND job_name IN ('doomed', 'keyed');
-- the key of the rolled-back element is free
SELECT immich_jobs.enqueue_many('many.big', '[{"name": "keyed", "dedup_key": "k7"}]')
       AS added;
SELECT immich_jobs.clear('many.big');
SELECT immich_jobs.complete_many(array_agg(job_id), array_agg(lease_token))
  FROM held;
TRUNCATE held;
SELECT * FROM counts WHERE queue_name = 'many.big';

--
-- malformed input: each is an error (22023 unless timestamptz says
-- otherwise) that names the element and says why; nothing is added
--
SELECT pg_temp.try(format('SELECT immich_jobs.enqueue_many(%L, %L)', 'many.q', jobs))
       AS result, jobs
  FROM (VALUES
    -- not an array
    ('{"name": "x"}'),
    ('5'),
    ('"[]"'),
    ('null'),
    ('true'),
    -- an element that is not an object
    ('[1]'),
    ('["name"]'),
    ('[null]'),
    ('[[{"name": "x"}]]'),
    ('[false]'),
    -- the name
    ('[{}]'),
    ('[{"payload": {}}]'),
    ('[{"name": null}]'),
    ('[{"name": 5}]'),
    ('[{"name": true}]'),
    ('[{"name": ["x"]}]'),
    ('[{"name": {"x": 1}}]'),
    ('[{"name": ""}]'),
    -- priority
    ('[{"name": "x", "priority": "1"}]'),
    ('[{"name": "x", "priority": true}]'),
    ('[{"name": "x", "priority": [1]}]'),
    ('[{"name": "x", "priority": 1.5}]'),
    ('[{"name": "x", "priority": -0.001}]'),
    ('[{"name": "x", "priority": 2147483648}]'),
    ('[{"name": "x", "priority": -2147483649}]'),
    ('[{"name": "x", "priority": 1e400}]'),
    -- run_at
    ('[{"name": "x", "run_at": 5}]'),
    ('[{"name": "x", "run_at": true}]'),
    ('[{"name": "x", "run_at": {"t": 1}}]'),
    ('[{"name": "x", "run_at": "soon"}]'),
    ('[{"name": "x", "run_at": ""}]'),
    ('[{"name": "x", "run_at": "2024-13-01"}]'),
    -- max_attempts
    ('[{"name": "x", "max_attempts": 0}]'),
    ('[{"name": "x", "max_attempts": 1001}]'),
    ('[{"name": "x", "max_attempts": -1}]'),
    ('[{"name": "x", "max_attempts": 2.5}]'),
    ('[{"name": "x", "max_attempts": "3"}]'),
    -- dedup_key
    ('[{"name": "x", "dedup_key": 5}]'),
    ('[{"name": "x", "dedup_key": true}]'),
    ('[{"name": "x", "dedup_key": ["k"]}]'),
    ('[{"name": "x", "dedup_key": ""}]'),
    -- unknown keys (names are case-sensitive)
    ('[{"name": "x", "priorty": 1}]'),
    ('[{"Name": "x"}]'),
    ('[{"name": "x", "queue": "many.q"}]'),
    -- the bad element is named by its 0-based index
    ('[{"name": "a"}, {"name": "b"}, {"nam": "c"}]'),
    ('[{"name": "a"}, 7]'),
    ('[{"name": "a", "dedup_key": "d"}, {"name": "b", "priority": 0.5}]')
  ) AS v(jobs);
-- too long: names and keys have at most 255 bytes
SELECT pg_temp.try(format('SELECT immich_jobs.enqueue_many(%L, %L)', 'many.q',
                          jsonb_build_array(jsonb_build_object('name', repeat('n', 256)))));
SELECT pg_temp.try(format('SELECT immich_jobs.enqueue_many(%L, %L)', 'many.q',
                          jsonb_build_array(jsonb_build_object('name', 'x',
                                                               'dedup_key', repeat('k', 256)))));
SELECT * FROM counts WHERE queue_name = 'many.q';
-- a few errors in full: message, DETAIL, HINT, CONTEXT
SELECT immich_jobs.enqueue_many('many.q', '{"name": "x"}');
SELECT immich_jobs.enqueue_many('many.q', '[{"name": "a"}, 7]');
SELECT immich_jobs.enqueue_many('many.q', '[{"name": "x", "priorty": 1}]');
SELECT immich_jobs.enqueue_many('many.q', '[{"name": "a"}, {"name": "x", "run_at": "soon"}]');
SELECT immich_jobs.enqueue_many('many.q', '[{"name": "x", "max_attempts": 0}]');
SELECT immich_jobs.enqueue_many('many.q', '[{"name": "a"}, {"name": ""}]');
SELECT immich_jobs.enqueue_many('many.q', '[{"name": "a", "dedup_key": ""}]');

-- the edges that are allowed
SELECT immich_jobs.enqueue_many('many.q', jsonb_build_array(
         jsonb_build_object('name', repeat('n', 255), 'dedup_key', repeat('k', 255)),
         jsonb_build_object('name', 'n', 'dedup_key', 'k'),
         jsonb_build_object('name', 'max', 'priority', 2147483647, 'max_attempts', 1000),
         jsonb_build_object('name', 'min', 'priority', -2147483648, 'max_attempts', 1)))
       AS added;
SELECT length(job_name) AS name_length, length(dedup_key) AS key_length,
       priority, max_attempts
  FROM immich_jobs.jobs WHERE queue_name = 'many.q' ORDER BY job_id;
SELECT * FROM counts;

-- clean up: this file leaves no queue behind
SELECT immich_jobs.drop_queue(queue_name, force => true)
  FROM immich_jobs.queue WHERE queue_name LIKE 'many.%' ORDER BY queue_name;
SELECT count(*) AS left_over FROM counts;
