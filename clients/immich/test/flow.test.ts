/**
 * Immich's pipeline, scripted: a library scan of 50 files (10 videos) run
 * by two microservices processes at Immich's default concurrency, with
 * Immich's handler chain (JobService.onDone):
 *
 *   LibraryScanQueueAll -> LibrarySyncFiles (batches of 10) -> SidecarCheck (bulk)
 *   SidecarCheck -> AssetExtractMetadata -> AssetGenerateThumbnails
 *   AssetGenerateThumbnails -> SmartSearch, AssetDetectFaces, Ocr, and AssetEncodeVideo for videos
 *   SmartSearch -> AssetDetectDuplicates
 *   AssetDetectFaces -> FacialRecognitionQueueAll (jobId: its name, so one at a time is kept)
 *   FacialRecognitionQueueAll -> FacialRecognition for each face not yet queued
 *   FacialRecognition -> PersonGenerateThumbnail (priority 1)
 *
 * Every job must run exactly once (FacialRecognitionQueueAll as often as
 * its jobId let it be queued), and the final counts must add up.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  JobName, type JobItem, JobStatus, QUEUE_NAMES, type QueueName,
} from '../src/index.js';
import { type Database, type TestRepo, serverForThisFile, waitFor, withDatabase } from './cluster.js';

const server = serverForThisFile();

const ASSETS = 50;
const VIDEOS = 10;
const BATCH = 10;

interface Asset { id: string; video: boolean; faces: string[] }

/** Immich's state, as far as the jobs are concerned. */
class World {
  readonly assets = new Map<string, Asset>();
  readonly unrecognized = new Set<string>();
  readonly queuedFaces = new Set<string>();
  readonly persons = new Map<string, string>();
  /** runs of each job, by name and id */
  readonly runs = new Map<string, number>();
  queueAllRuns = 0;
  queueAllQueued = 0;
  queueAllRunning = 0;
  queueAllMostAtOnce = 0;
  /** jobs whose handler (and onDone) are running now */
  running = 0;

  count(item: JobItem): void {
    const key = `${item.name}:${String(item.data?.id ?? item.data?.libraryId ?? '')}` +
      (item.name === JobName.LibrarySyncFiles ? `:${String(item.data.batch)}` : '');
    this.runs.set(key, (this.runs.get(key) ?? 0) + 1);
  }

  ran(name: string): number {
    return [...this.runs.entries()].filter(([k]) => k.startsWith(`${name}:`)).reduce((a, [, n]) => a + n, 0);
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Immich's handlers and JobService, on a repository. */
function immich(world: World, repoOf: () => TestRepo) {
  const queue = (item: JobItem): Promise<void> => repoOf().queue(item);
  const queueAll = (items: JobItem[]): Promise<void> => repoOf().queueAll(items);
  const handlers = {
    [JobName.LibraryScanQueueAll]: async (data: { libraryId: string }) => {
      const paths = Array.from({ length: ASSETS }, (_, i) => `/photos/${i}.${i < VIDEOS ? 'mp4' : 'jpg'}`);
      const batches: JobItem[] = [];
      for (let b = 0; b * BATCH < paths.length; b++) {
        batches.push({ name: JobName.LibrarySyncFiles,
          data: { libraryId: data.libraryId, batch: b, paths: paths.slice(b * BATCH, (b + 1) * BATCH) } });
      }
      await queueAll(batches);
      return JobStatus.Success;
    },
    [JobName.LibrarySyncFiles]: async (data: { paths: string[] }) => {
      for (const path of data.paths) {
        world.assets.set(path, { id: path, video: path.endsWith('.mp4'), faces: [] });
      }
      await queueAll(data.paths.map((id) => ({ name: JobName.SidecarCheck, data: { id } })));
      return JobStatus.Success;
    },
    [JobName.SidecarCheck]: async () => { await pause(1); return JobStatus.Success; },
    [JobName.AssetExtractMetadata]: async () => { await pause(3); return JobStatus.Success; },
    [JobName.AssetGenerateThumbnails]: async () => { await pause(3); return JobStatus.Success; },
    [JobName.SmartSearch]: async () => { await pause(2); return JobStatus.Success; },
    [JobName.AssetDetectDuplicates]: async () => JobStatus.Success,
    [JobName.Ocr]: async () => { await pause(2); return JobStatus.Success; },
    [JobName.AssetEncodeVideo]: async () => { await pause(20); return JobStatus.Success; },
    [JobName.AssetDetectFaces]: async (data: { id: string }) => {
      const asset = world.assets.get(data.id)!;
      asset.faces = [`${data.id}#face`];
      for (const face of asset.faces) {
        world.unrecognized.add(face);
      }
      return JobStatus.Success;
    },
    [JobName.FacialRecognitionQueueAll]: async () => {
      world.queueAllRuns++;
      world.queueAllRunning++;
      world.queueAllMostAtOnce = Math.max(world.queueAllMostAtOnce, world.queueAllRunning);
      await pause(5);
      const faces = [...world.unrecognized].filter((f) => !world.queuedFaces.has(f));
      faces.forEach((f) => world.queuedFaces.add(f));
      await queueAll(faces.map((id) => ({ name: JobName.FacialRecognition, data: { id } })));
      world.queueAllRunning--;
      return JobStatus.Success;
    },
    [JobName.FacialRecognition]: async (data: { id: string }) => {
      world.unrecognized.delete(data.id);
      const person = `person(${data.id})`;
      world.persons.set(data.id, person);
      await queue({ name: JobName.PersonGenerateThumbnail, data: { id: person } });
      return JobStatus.Success;
    },
    [JobName.PersonGenerateThumbnail]: async () => JobStatus.Success,
  };

  /** JobService.onDone: the next jobs of a job that succeeded (or was skipped). */
  async function onDone(item: JobItem): Promise<void> {
    const id = item.data?.id as string;
    switch (item.name) {
      case JobName.SidecarCheck:
        await queue({ name: JobName.AssetExtractMetadata, data: { id, source: 'upload' } });
        break;
      case JobName.AssetExtractMetadata:
        if (item.data.source === 'upload') {
          await queue({ name: JobName.AssetGenerateThumbnails, data: { id, source: 'upload' } });
        }
        break;
      case JobName.AssetGenerateThumbnails: {
        const jobs: JobItem[] = [
          { name: JobName.SmartSearch, data: { id } },
          { name: JobName.AssetDetectFaces, data: { id } },
          { name: JobName.Ocr, data: { id } },
        ];
        if (world.assets.get(id)?.video) {
          jobs.push({ name: JobName.AssetEncodeVideo, data: { id } });
        }
        await queueAll(jobs);
        break;
      }
      case JobName.SmartSearch:
        await queue({ name: JobName.AssetDetectDuplicates, data: { id } });
        break;
      case JobName.AssetDetectFaces:
        world.queueAllQueued++;
        await queue({ name: JobName.FacialRecognitionQueueAll, data: { force: false } });
        break;
      default:
        break;
    }
  }

  /** JobService.onJobStart: run the handler, then onDone; errors are reported, never thrown. */
  async function onJob(_queue: QueueName, item: JobItem): Promise<void> {
    world.running++;
    try {
      world.count(item);
      const status = await repoOf().run(item);
      if (status === JobStatus.Success || status === JobStatus.Skipped) {
        await onDone(item);
      }
    } finally {
      world.running--;
    }
  }

  return { handlers, onJob };
}

async function totals(db: Database): Promise<{ busy: number; completed: number }> {
  const [row] = await db.query(`SELECT sum(active + waiting + delayed)::int AS busy,
      sum(completed)::int AS completed FROM immich_jobs.queue_counts`);
  return { busy: Number(row?.['busy']), completed: Number(row?.['completed']) };
}

/** Nothing active, waiting or delayed, twice in a row with nothing completed in between. */
async function settled(db: Database, world: World): Promise<void> {
  let last = -1;
  await waitFor(async () => {
    const t = await totals(db);
    const quiet = t.busy === 0 && world.running === 0;
    const stable = quiet && t.completed === last;
    last = quiet ? t.completed : -1;
    return stable;
  }, 'the queues to settle', 60_000);
}

describe('an Immich library scan', () => {
  it('runs each job of the pipeline exactly once, over two processes', (t) => withDatabase(server.cluster, async (db) => {
    const world = new World();
    const repos: TestRepo[] = [];
    let next = 0;
    // each process queues its follow-up jobs on its own repository
    const make = (): TestRepo => {
      const index = repos.length;
      const { handlers, onJob } = immich(world, () => repos[index]!);
      const repo = db.repo({ handlers, onJob });
      repos.push(repo);
      return repo;
    };
    const one = make();
    const two = make();
    await one.setup();
    await one.startWorkers();
    await two.startWorkers();
    const anyRepo = (): TestRepo => repos[next++ % repos.length]!;

    await anyRepo().queue({ name: JobName.LibraryScanQueueAll, data: { libraryId: 'lib1' } });
    await settled(db, world);
    // the nightly FacialRecognitionQueueAll picks up the faces detected while one was running
    await anyRepo().queue({ name: JobName.FacialRecognitionQueueAll, data: { force: false, nightly: true } });
    await settled(db, world);

    // every job ran exactly once
    const twice = [...world.runs.entries()].filter(([k, n]) => n !== 1 && !k.startsWith('FacialRecognitionQueueAll:'));
    assert.deepEqual(twice, [], 'no job ran twice');
    const expected: Record<string, number> = {
      LibraryScanQueueAll: 1, LibrarySyncFiles: ASSETS / BATCH, SidecarCheck: ASSETS,
      AssetExtractMetadata: ASSETS, AssetGenerateThumbnails: ASSETS, SmartSearch: ASSETS,
      AssetDetectDuplicates: ASSETS, AssetDetectFaces: ASSETS, Ocr: ASSETS, AssetEncodeVideo: VIDEOS,
      FacialRecognition: ASSETS, PersonGenerateThumbnail: ASSETS,
    };
    for (const [name, n] of Object.entries(expected)) {
      assert.equal(world.ran(name), n, name);
    }
    assert.equal(world.persons.size, ASSETS, 'every face was recognized');
    assert.equal(world.unrecognized.size, 0);
    // FacialRecognitionQueueAll: queued once per face detection (and the
    // nightly one), never two at once, kept once by its jobId
    assert.ok(world.queueAllRuns >= 1 && world.queueAllRuns <= world.queueAllQueued + 1,
      `${world.queueAllRuns} runs of ${world.queueAllQueued + 1} queued`);
    assert.equal(world.queueAllMostAtOnce, 1);
    t.diagnostic(`FacialRecognitionQueueAll: queued ${world.queueAllQueued + 1} times, ran ${world.queueAllRuns}`);

    // the final counts, queue by queue
    const completed: Partial<Record<QueueName, number>> = {
      library: 1 + ASSETS / BATCH, sidecar: ASSETS, metadataExtraction: ASSETS,
      thumbnailGeneration: 2 * ASSETS, smartSearch: ASSETS, duplicateDetection: ASSETS,
      faceDetection: ASSETS, ocr: ASSETS, videoConversion: VIDEOS,
      facialRecognition: ASSETS + world.queueAllRuns,
    };
    for (const q of QUEUE_NAMES) {
      assert.deepEqual(await one.getJobCounts(q),
        { active: 0, completed: completed[q] ?? 0, failed: 0, delayed: 0, waiting: 0, paused: 0 }, q);
    }
    assert.deepEqual([...one.log.of('error'), ...two.log.of('error')], []);
    assert.deepEqual([...one.log.of('warn'), ...two.log.of('warn')], []);
  }));
});
