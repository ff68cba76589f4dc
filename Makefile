# immich_jobs: PGXS build
MODULE_big = immich_jobs
OBJS = \
	src/immich_jobs.o \
	src/settings.o \
	src/admission.o \
	src/plans.o \
	src/queue.o \
	src/enqueue.o \
	src/lease.o

EXTENSION = immich_jobs
DATA = sql/immich_jobs--1.0.sql
PGFILEDESC = "immich_jobs - durable job queue for Immich"

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
