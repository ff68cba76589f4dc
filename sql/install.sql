--
-- Installation: the extension creates its schema, tables and views, and
-- every object it creates is documented.
--
SET client_min_messages = warning;
CREATE EXTENSION immich_jobs;
RESET client_min_messages;

SELECT extname, extversion, extrelocatable, n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'immich_jobs';

-- every function and view has a comment (psql's \df+ and \dv+ show it)
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args
  FROM pg_proc p
 WHERE p.pronamespace = 'immich_jobs'::regnamespace
   AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT c.relname
  FROM pg_class c
 WHERE c.relnamespace = 'immich_jobs'::regnamespace
   AND c.relkind IN ('r', 'v')
   AND obj_description(c.oid, 'pg_class') IS NULL;

-- tables marked for pg_dump
SELECT unnest(extconfig)::regclass AS dumped
  FROM pg_extension WHERE extname = 'immich_jobs' ORDER BY 1;
