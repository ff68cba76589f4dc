/**
 * The simulated library and Immich's chain of jobs, shared by the driver
 * (which needs to know what must happen) and the worker processes (which
 * make it happen).
 *
 * Asset i of the library is the file assetPath(i); its id (a uuid, as in
 * Immich) ends with i in hex, so that every process can tell what the asset
 * is without asking anybody: a video (5%), a "poison" file whose metadata
 * extraction always fails (0.1%, at least one), and how many faces it has.
 */

/** Settings of a run, from the environment (the driver passes its own to the workers). */
export interface Settings {
  /** files in the library */
  assets: number;
  /** worker processes */
  workers: number;
  /** chaos on */
  chaos: boolean;
  /** paths per LibrarySyncFiles job */
  batch: number;
  /** lease timeout of the queues, ms */
  leaseMs: number;
  /** the server's socket directory */
  host: string;
  /** the database */
  database: string;
  /** where the PostgreSQL programs are */
  bindir: string;
  /** the directory of this run: records, logs, backups */
  runDir: string;
}

function intEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') {
    return fallback;
  }
  const value = Number(text.replace(/_/g, ''));
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} must be a whole number, not ${JSON.stringify(text)}`);
  }
  return value;
}

export function settingsFromEnv(): Settings {
  const assets = Math.max(10, intEnv('ASSETS', 20_000));
  const runDir = process.env['DEMO_RUN_DIR'];
  const host = process.env['PGHOST'];
  if (runDir === undefined || host === undefined) {
    throw new Error('run me through tools/demo (DEMO_RUN_DIR and PGHOST are not set)');
  }
  return {
    assets,
    workers: Math.max(1, intEnv('WORKERS', 3)),
    chaos: (process.env['CHAOS'] ?? '1') !== '0',
    // Immich pages library files by 10,000; 1,000 here, fewer for small runs
    batch: Math.min(1_000, Math.max(50, Math.ceil(assets / 20))),
    leaseMs: intEnv('LEASE_MS', 10_000),
    host,
    database: process.env['PGDATABASE'] ?? 'immich',
    bindir: process.env['PG_BINDIR'] ?? '/usr/lib/postgresql/15/bin',
    runDir,
  };
}

export const LIBRARY_ID = '7e4b2a1c-3d5f-4e6a-9b8c-0d1e2f3a4b5c';

/** Simulated durations of the handlers, in ms (small: on 2 cores the machine, not the handlers, sets the pace). */
export const DURATION_MS: Readonly<Record<string, number>> = {
  LibraryScanQueueAll: 20,
  LibraryQueueSyncFiles: 300,   // crawling the import paths
  LibrarySyncFiles: 100,        // plus inserting the assets
  SidecarCheck: 3,
  AssetExtractMetadata: 8,
  AssetGenerateThumbnails: 5,
  PersonGenerateThumbnail: 3,
  SmartSearch: 4,
  AssetDetectFaces: 4,
  AssetDetectDuplicates: 2,
  Ocr: 2,
  AssetEncodeVideo: 60,
  FacialRecognitionQueueAll: 200,
};

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0').slice(-width);
}

/** A 32-bit hash of a number (for ids that look random). */
function mix(n: number): number {
  let h = Math.imul(n ^ 0x9e3779b9, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function isVideoIndex(i: number): boolean {
  return i % 20 === 7;
}

export function assetPath(i: number): string {
  const year = 2008 + (i % 17);
  const month = 1 + (mix(i) % 12);
  return `/mnt/media/photos/${year}/${String(month).padStart(2, '0')}/` +
    `${isVideoIndex(i) ? 'VID' : 'IMG'}_${String(i).padStart(6, '0')}.${isVideoIndex(i) ? 'mp4' : 'jpg'}`;
}

export function indexOfPath(path: string): number {
  const m = /_(\d+)\.\w+$/.exec(path);
  if (m === null) {
    throw new Error(`not a library path: ${path}`);
  }
  return Number(m[1]);
}

/** The asset's id: a uuid whose last group is its index. */
export function assetId(i: number): string {
  const a = mix(i);
  const b = mix(i + 0x51ed27);
  return `${hex(a, 8)}-${hex(b >>> 16, 4)}-4${hex(b, 3)}-a${hex(a >>> 20, 3)}-${hex(i, 12)}`;
}

export function indexOfAsset(id: string): number {
  return parseInt(id.slice(-12), 16);
}

/** The id of the person of face k of asset i (a new person per face, for the demo). */
export function personId(i: number, k: number): string {
  const a = mix(i * 8 + k + 0x7f4a7c15);
  return `${hex(a, 8)}-0000-4000-b000-${hex(i * 8 + k, 12)}`;
}

/** What a library of n files holds. */
export class Library {
  readonly poison: ReadonlySet<number>;

  constructor(readonly size: number) {
    // 0.1% of the files, at least one, spread over the library
    const count = Math.max(1, Math.round(size / 1000));
    const poison = new Set<number>();
    for (let k = 0; k < count; k++) {
      poison.add(Math.floor((size / count) * (k + 0.5)));
    }
    this.poison = poison;
  }

  isPoison(i: number): boolean {
    return this.poison.has(i);
  }

  isVideo(i: number): boolean {
    return isVideoIndex(i);
  }

  /** faces in asset i: 0, 1 or 2 (0.75 on average) */
  faces(i: number): number {
    return [0, 1, 0, 2][mix(i + 77) % 4] ?? 0;
  }

  /** the faces of asset i that are a new person (one in three): each gets a PersonGenerateThumbnail */
  newPersons(i: number): number[] {
    const faces: number[] = [];
    for (let k = 0; k < this.faces(i); k++) {
      if (mix(i * 8 + k + 0x3c6ef372) % 3 === 0) {
        faces.push(k);
      }
    }
    return faces;
  }

  /** the paths of the library, in the order a crawl finds them */
  paths(): string[] {
    return Array.from({ length: this.size }, (_, i) => assetPath(i));
  }

  /**
   * The jobs that must run to the end once for asset i, as keys (name:id):
   * what the verdict checks the records against.
   */
  stagesOf(i: number): string[] {
    const id = assetId(i);
    const keys = [`SidecarCheck:${id}`, `AssetExtractMetadata:${id}`];
    if (this.isPoison(i)) {
      return keys;       // its metadata extraction fails: the chain stops there
    }
    keys.push(`AssetGenerateThumbnails:${id}`, `SmartSearch:${id}`, `AssetDetectDuplicates:${id}`,
      `AssetDetectFaces:${id}`, `Ocr:${id}`);
    if (this.isVideo(i)) {
      keys.push(`AssetEncodeVideo:${id}`);
    }
    for (const k of this.newPersons(i)) {
      keys.push(`PersonGenerateThumbnail:${personId(i, k)}`);
    }
    return keys;
  }

  /** the jobs of the scan itself */
  scanKeys(batch: number): string[] {
    const keys = ['LibraryScanQueueAll:-', `LibraryQueueSyncFiles:${LIBRARY_ID}`];
    for (let first = 0; first < this.size; first += batch) {
      keys.push(`LibrarySyncFiles:${first}`);
    }
    return keys;
  }

  /** every key that must be seen */
  allKeys(batch: number): Set<string> {
    const keys = new Set(this.scanKeys(batch));
    for (let i = 0; i < this.size; i++) {
      for (const key of this.stagesOf(i)) {
        keys.add(key);
      }
    }
    return keys;
  }
}

/**
 * The key of a job in the records: its name and what it works on, so that
 * the chain can be checked whatever the job ids.  Jobs that may legitimately
 * run any number of times (FacialRecognitionQueueAll, DatabaseBackup) have
 * keys that are not expected, and are left out of the chain.
 */
export function keyOf(name: string, data: Record<string, unknown> | undefined): string {
  if (name === 'LibrarySyncFiles') {
    const paths = (data?.['paths'] as string[] | undefined) ?? [];
    return `${name}:${paths.length > 0 ? indexOfPath(paths[0]!) : '?'}`;
  }
  const id = data?.['id'];
  return `${name}:${typeof id === 'string' ? id : '-'}`;
}
