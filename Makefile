# immich_jobs: PGXS build
MODULE_big = immich_jobs
OBJS = \
	src/immich_jobs.o \
	src/settings.o \
	src/args.o \
	src/catalog.o \
	src/shared.o \
	src/xact.o \
	src/loader.o \
	src/admission.o \
	src/lookup.o \
	src/wakeup.o \
	src/commit.o \
	src/plans.o \
	src/bulk.o \
	src/queue.o \
	src/enqueue.o \
	src/lease.o \
	src/worker.o

EXTENSION = immich_jobs
DATA = sql/immich_jobs--1.0.sql sql/immich_jobs--1.0--1.1.sql \
	sql/immich_jobs--1.1--1.2.sql
PGFILEDESC = "immich_jobs - durable job queue for Immich"

# pg_regress tests: sql/<name>.sql, expected/<name>.out
REGRESS = install queues enqueue enqueue_many enqueue_many_bulk lease complete_and_claim bullmq admin errors limits prepare search_path
REGRESS_OPTS = --inputdir=.

# isolation tests: test/isolation/specs/<name>.spec, .../expected/<name>.out
ISOLATION = claim-race admission complete-reap cancel-complete pause-claim dedup-race wakeup heartbeat-release bulk-reindex rr-claim-cursor recreate-rollback enqueue-drop complete-claim dedup-kept late-load clear-retry complete-drop
ISOLATION_OPTS = --inputdir=test/isolation

# TAP tests (PostgreSQL::Test::Cluster): test/t/*.pl
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config

# Our code builds clean with -Wall -Wextra; the server's headers are included
# as system headers, because some of them do not (unused parameters).
PG_CFLAGS = -Wall -Wextra
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server)
ifdef WERROR
PG_CFLAGS += -Werror
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every file includes the shared header, some the internal ones (PGXS
# tracks no header dependencies)
$(OBJS): src/immich_jobs.h src/shared.h src/xact.h

# Every suite runs on throwaway servers that the suite starts itself, in
# both modes: MODE=preload (shared_preload_libraries = 'immich_jobs') and
# MODE=plain (loaded on demand).  "make install" first.
MODE ?= preload
TEMP_CONF = --temp-config=$(srcdir)/test/conf/$(MODE).conf

.PHONY: test test-regress test-isolation test-tap test-pgtap

test-regress:
	@mkdir -p test/output
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(TEMP_CONF) \
		--temp-instance=$(CURDIR)/tmp_check_regress_$(MODE) \
		--outputdir=$(CURDIR)/test/output/regress-$(MODE) $(REGRESS)

test-isolation:
	@mkdir -p test/output
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(TEMP_CONF) \
		--temp-instance=$(CURDIR)/tmp_check_iso_$(MODE) \
		--outputdir=$(CURDIR)/test/output/isolation-$(MODE) $(ISOLATION)

test-tap:
	$(prove_installcheck)

test-pgtap:
	$(srcdir)/test/pgtap/run $(PG_CONFIG)

# everything, as tools/test and CI run it
test:
	$(srcdir)/tools/test --no-setup

# The benchmark of issue 3 (a tool, not a test): builds, installs (as root),
# measures on a throwaway server and writes bench/results/latest.{md,json}.
# make bench QUICK=1 is the short run.  It ends with bench-app.
.PHONY: bench bench-app
bench: all
	QUICK="$(QUICK)" PG_CONFIG="$(PG_CONFIG)" $(srcdir)/test/bench/run
	QUICK="$(QUICK)" PG_CONFIG="$(PG_CONFIG)" $(srcdir)/test/bench/app/run

# The application-shaped benchmark: immich_jobs through its Node client
# against a hand-written SQL queue and BullMQ on Redis, with a worker shaped
# like Immich's; writes bench/results/app-latest.{md,json}.  As root (it
# installs redis-server, npm packages and the extension, and runs PostgreSQL
# as postgres).  make bench-app QUICK=1 is the short run.
bench-app: all
	QUICK="$(QUICK)" PG_CONFIG="$(PG_CONFIG)" $(srcdir)/test/bench/app/run
