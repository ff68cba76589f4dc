-- The immich_jobs walkthrough: what Immich's server does, in psql.
\pset footer off
\echo '== install the extension (the library is preloaded: admission in shared memory)'
CREATE EXTENSION immich_jobs;

\echo '== Immich''s queues, with their default concurrency'
SELECT immich_jobs.create_queue('thumbnailGeneration', concurrency => 3);
SELECT immich_jobs.create_queue('metadataExtraction', concurrency => 5);
SELECT immich_jobs.create_queue('videoConversion', concurrency => 1,
                                lease_timeout => '30 minutes');

\echo '== a library scan fans out: 10,000 metadata jobs in one call'
SELECT immich_jobs.enqueue_many('metadataExtraction',
         (SELECT jsonb_agg(jsonb_build_object(
                   'name', 'metadata-extraction',
                   'payload', jsonb_build_object('assetId', gen_random_uuid())))
            FROM generate_series(1, 10000))) AS added;

\echo '== a person thumbnail outranks asset thumbnails (priority 1)'
SELECT immich_jobs.enqueue('thumbnailGeneration', 'generate-thumbnails',
                           '{"assetId": "a1"}') AS job_id;
SELECT immich_jobs.enqueue('thumbnailGeneration', 'generate-person-thumbnail',
                           '{"personId": "p1"}', priority => 1) AS job_id;

\echo '== re-adding a job that has not run yet adds nothing (dedup key)'
SELECT immich_jobs.enqueue('thumbnailGeneration', 'generate-thumbnails',
                           '{"assetId": "a2"}', dedup_key => 'a2') AS first,
       immich_jobs.enqueue('thumbnailGeneration', 'generate-thumbnails',
                           '{"assetId": "a2"}', dedup_key => 'a2') AS again;

SELECT * FROM immich_jobs.queue_counts ORDER BY queue_name;

\echo '== a worker asks for 10 thumbnail jobs: the queue admits 3 (its concurrency)'
SELECT job_id, job_name, payload, attempt
  FROM immich_jobs.claim('thumbnailGeneration', 'worker-1', max_jobs => 10);
\echo '== another worker gets nothing until one of them ends'
SELECT count(*) AS claimed
  FROM immich_jobs.claim('thumbnailGeneration', 'worker-2', max_jobs => 10);

\echo '== the worker completes one with its lease token; a stale token is refused'
SELECT j.job_id, immich_jobs.complete(j.job_id, t.lease_token) AS completed,
       immich_jobs.complete(j.job_id, t.lease_token) AS completed_again
  FROM immich_jobs.jobs j
  JOIN immich_jobs.job t USING (job_id)
 WHERE j.queue_name = 'thumbnailGeneration' AND j.state = 'active'
 ORDER BY j.job_id LIMIT 1;

\echo '== one fails: it will be retried after the backoff'
SELECT immich_jobs.fail(j.job_id, t.lease_token, 'ffmpeg exited with 1') AS outcome
  FROM immich_jobs.jobs j
  JOIN immich_jobs.job t USING (job_id)
 WHERE j.queue_name = 'thumbnailGeneration' AND j.state = 'active'
 ORDER BY j.job_id LIMIT 1;

\echo '== the admin pauses video conversion; nothing is admitted while paused'
SELECT immich_jobs.enqueue('videoConversion', 'video-conversion', '{"assetId": "v1"}') AS job_id;
SELECT immich_jobs.pause_queue('videoConversion');
SELECT count(*) AS claimed FROM immich_jobs.claim('videoConversion', 'worker-1');
SELECT immich_jobs.resume_queue('videoConversion');
SELECT count(*) AS claimed FROM immich_jobs.claim('videoConversion', 'worker-1');

\echo '== a face-detection worker takes a job and dies (OOM kill): nobody calls anything'
SELECT immich_jobs.create_queue('faceDetection', concurrency => 2,
                                lease_timeout => '1 second');
SELECT immich_jobs.enqueue('faceDetection', 'face-detection', '{"assetId": "f1"}') AS job_id;
SELECT job_id, attempt FROM immich_jobs.claim('faceDetection', 'worker-that-dies');
-- wait (at most 10 s) until the background worker has reclaimed the lease
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN EXISTS (SELECT FROM immich_jobs.jobs
                           WHERE queue_name = 'faceDetection' AND state = 'waiting');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
\echo '== the reaper put it back, counting the attempt; another worker takes it'
SELECT job_id, state, attempt, last_error FROM immich_jobs.jobs
 WHERE queue_name = 'faceDetection';
SELECT job_id, attempt FROM immich_jobs.claim('faceDetection', 'worker-2');
SELECT backend_type, datname, state FROM pg_stat_activity
 WHERE backend_type LIKE 'immich_jobs%' ORDER BY backend_type;

\echo '== Immich''s admin page: one row per queue'
SELECT * FROM immich_jobs.queue_counts ORDER BY queue_name;

\echo '== the jobs still kept'
SELECT job_id, queue_name, job_name, state, attempt, last_error
  FROM immich_jobs.jobs
 WHERE queue_name <> 'metadataExtraction'
 ORDER BY job_id;
