import { join } from 'node:path';

/** Where a store keeps what it is still writing: never visible, dropped at the next start. */
export const INCOMING = '.incoming';

/**
 * What the worker keeps under WORKER_DATA_DIR, and the one place its names are spelled:
 *
 *     worker.lock          the kernel lock that makes a data directory one worker's
 *     url-secret           the key of signed artifact URLs (when WORKER_URL_SECRET is not set)
 *     sessions/<id>/       each session: record, trees, disk image, workspace, environment
 *     quarantine/          sessions that could not be adopted, kept for a person to look at
 *     checkpoints/         the local checkpoint store (archives and records)
 *     checkpoint-scratch/  archives fetched from S3 while a restore reads them
 *     artifacts/           the local artifact store
 *     caches.img           the package caches' disk (WORKER_CACHE_DISK_MB), loop-mounted on caches/
 *     caches/              what installs keep for later ones, bounded by that disk:
 *       pip-cache/         the shared pip cache (owned by the installer uid)
 *       wheel-store/       wheels pkg.install fetched, the worker's (sessions get them read-only)
 *       npm-cache/         the shared npm cache (owned by the installer uid)
 *       go-cache/          the shared Go module download cache (owned by the installer uid)
 *     scratch/             the worker's own scratch space, emptied at start (disk templates,
 *                          network/: the sessions' resolv.conf)
 */
export interface DataDirectory {
  root: string;
  lock: string;
  urlSecret: string;
  sessions: string;
  quarantine: string;
  checkpoints: string;
  checkpointScratch: string;
  artifacts: string;
  /** The package caches' disk image and its mount point, which holds the four caches below. */
  cacheImage: string;
  caches: string;
  pipCache: string;
  wheelStore: string;
  npmCache: string;
  goCache: string;
  scratch: string;
  /** The sessions' resolv.conf (network/networkHost.ts). */
  network: string;
  diskTemplates: string;
}

export function dataDirectory(root: string): DataDirectory {
  const scratch = join(root, 'scratch');
  const caches = join(root, 'caches');
  return {
    root,
    lock: join(root, 'worker.lock'),
    urlSecret: join(root, 'url-secret'),
    sessions: join(root, 'sessions'),
    quarantine: join(root, 'quarantine'),
    checkpoints: join(root, 'checkpoints'),
    checkpointScratch: join(root, 'checkpoint-scratch'),
    artifacts: join(root, 'artifacts'),
    cacheImage: join(root, 'caches.img'),
    caches,
    pipCache: join(caches, 'pip-cache'),
    wheelStore: join(caches, 'wheel-store'),
    npmCache: join(caches, 'npm-cache'),
    goCache: join(caches, 'go-cache'),
    scratch,
    diskTemplates: join(scratch, 'disk-templates'),
    network: join(scratch, 'network'),
  };
}

/** What an earlier run was writing when it died: never visible to a client, so removed at start. */
export function unfinishedWrites(dirs: DataDirectory): string[] {
  return [join(dirs.checkpoints, INCOMING), join(dirs.artifacts, INCOMING), dirs.checkpointScratch];
}

/**
 * The caches of earlier versions, kept directly in the data directory (unbounded): names of
 * `root`'s entries to remove at start, so the room they took is free before it is reserved.
 */
export function legacyCaches(names: string[]): string[] {
  return names.filter((name) => /^(?:pip-cache|npm-cache|go-cache|wheel-store(?:\.old-.*)?)$/.test(name));
}
