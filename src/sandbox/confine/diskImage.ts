import { chmod, mkdir, open, readFile, readdir, realpath, rename, rm, stat, statfs, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { messageOf } from '../../errors.js';
import { runHostTool } from '../process/hostTools.js';

/**
 * A session's disk limit (`max_disk_mb`) as a filesystem of that size on the disk: a sparse file
 * in the session's directory, formatted ext4 and loop-mounted over its `disk/` directory, which
 * holds the workspace and the session's environment. Writes past it fail with ENOSPC for the
 * session's code, pip and fs.write alike; it costs the host only the blocks written (not RAM, as
 * a tmpfs would), and it outlives the worker: a restarted worker mounts it again.
 */

/**
 * The image that leaves about `megabytes` free, and how to format it: ext4 keeps its journal
 * (1 MB on small disks with 1 KiB blocks, 4 MB otherwise) and about 3.3% (inode tables, one inode
 * per 8 KiB) for itself; the constants were measured with these very mkfs lines.
 */
function layout(megabytes: number): { bytes: number; mkfs: string[] } {
  const small = megabytes < 64;
  const kib = Math.floor(((megabytes + (small ? 1.2 : 4.6)) / 0.967) * 1024);
  return { bytes: kib * 1024, mkfs: small ? ['-b', '1024', '-J', 'size=1'] : ['-b', '4096', '-J', 'size=4'] };
}

/** The size of the image for a disk of `megabytes` (what it may grow to on the host). */
export function imageBytes(megabytes: number): number {
  return layout(megabytes).bytes;
}

async function runTool(command: string, args: string[]): Promise<void> {
  await runHostTool(command, args);
}

/**
 * How images are copied and mounted: by diskHelper.ts's system calls (session disks), or by
 * cp and mount(8) (imageTools: for images made once in a worker's life, the caches' disk).
 */
export interface ImageTools {
  /** Makes `file` (it must not exist; mode 0600) a sparse copy of `template`. */
  copy(template: string, file: string): Promise<void>;
  /** Attaches the image `file` to a loop device and mounts it on `mountPoint` (nosuid, nodev). */
  mount(file: string, mountPoint: string): Promise<void>;
}

export const imageTools: ImageTools = {
  async copy(template, file) {
    await runTool('cp', ['--sparse=always', '--no-preserve=all', template, file]);
    await chmod(file, 0o600);
  },
  mount: (file, mountPoint) => runTool('mount', ['-o', 'loop,nosuid,nodev', file, mountPoint]),
};

/**
 * Makes a sparse image of `megabytes` usable space at `file` and mounts it on `mountPoint`. The
 * first image of a size is formatted into `templates` (mkfs takes tens of milliseconds); later
 * ones are sparse copies of it, a fraction of that.
 */
export async function makeDiskImage(file: string, mountPoint: string, megabytes: number, templates: string, tools: ImageTools): Promise<void> {
  const template = join(templates, `ext4-${megabytes}mb.img`);
  const now = new Date();
  const cached = await utimes(template, now, now).then(
    () => true,
    () => false,
  );
  if (!cached) {
    // One format per template: spares being made and a session made beside them all found it missing at start-up.
    let formatting = templatesFormatting.get(template);
    if (!formatting) {
      formatting = formatDiskImage(template, megabytes)
        .then(() => pruneTemplates(templates, MAX_TEMPLATES))
        .finally(() => templatesFormatting.delete(template));
      templatesFormatting.set(template, formatting);
    }
    await formatting;
  }
  await tools.copy(template, file);
  await mountDiskImage(file, mountPoint, tools);
}

/** Templates being formatted, by path. */
const templatesFormatting = new Map<string, Promise<void>>();

/** Templates kept: sizes are the client's choice, so the cache must not grow with every size asked for. */
export const MAX_TEMPLATES = 8;

/** Removes all but the `keep` most recently used templates (their mtime is touched on use). */
export async function pruneTemplates(templates: string, keep: number): Promise<void> {
  const names = (await readdir(templates)).filter((name) => /^ext4-\d+mb\.img$/.test(name));
  if (names.length <= keep) return;
  const used = await Promise.all(names.map(async (name) => ({ name, at: (await stat(join(templates, name)).catch(() => undefined))?.mtimeMs ?? 0 })));
  used.sort((a, b) => b.at - a.at);
  // A copy in progress holds its own descriptor: removing the name under it is harmless.
  await Promise.all(used.slice(keep).map(({ name }) => rm(join(templates, name), { force: true })));
}

/** Formats a sparse image of `megabytes` usable space at `template` (written aside, then renamed: never half made). */
export async function formatDiskImage(template: string, megabytes: number): Promise<void> {
  await mkdir(dirname(template), { recursive: true });
  const partial = `${template}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  const { bytes, mkfs } = layout(megabytes);
  try {
    const handle = await open(partial, 'wx', 0o600);
    try {
      await handle.truncate(bytes);
    } finally {
      await handle.close();
    }
    // Lazy initialisation: a sparse image of any size formats in tens of milliseconds.
    await runTool('mkfs.ext4', [
      '-q',
      '-F',
      '-m',
      '0',
      '-i',
      '8192',
      ...mkfs,
      '-E',
      'lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0',
      partial,
    ]);
    await rename(partial, template);
  } finally {
    await rm(partial, { force: true });
  }
}

/** Mounts an image made by makeDiskImage, unless it is mounted there already (a worker killed with it mounted). */
export async function mountDiskImage(file: string, mountPoint: string, tools: ImageTools): Promise<void> {
  if (await isMountPoint(mountPoint)) return;
  await mkdir(mountPoint, { recursive: true });
  await tools.mount(file, mountPoint);
}

/**
 * Writes what the mounted filesystem holds in memory to its image (syncfs), before a lazy
 * unmount of a disk the next start mounts again. Lazily unmounted, a filesystem lives on while
 * anything still refers to it (a killed sandbox's mount namespace, torn down late on a busy
 * host); the next start's mount of the image read files written before the stop as empty.
 */
export async function syncDiskImage(mountPoint: string): Promise<void> {
  if (!(await isMountPoint(mountPoint))) return;
  await runTool('sync', ['--file-system', mountPoint]);
}

/** Unmounts it (lazily: nothing of the session runs any more); its loop device goes with it. */
export async function unmountDiskImage(mountPoint: string): Promise<void> {
  if (!(await isMountPoint(mountPoint))) return;
  await runTool('umount', ['-l', mountPoint]).catch(() => undefined);
}

/** Files (inodes) in use on the mounted filesystem: at most the entries a walk of it finds. */
export async function filesUsed(mountPoint: string): Promise<number> {
  const fs = await statfs(mountPoint);
  return fs.files - fs.ffree;
}

/** Bytes in use on the mounted filesystem. */
export async function usedBytes(mountPoint: string): Promise<number> {
  const fs = await statfs(mountPoint);
  return (fs.blocks - fs.bfree) * fs.bsize;
}

/**
 * Whether this host can give sessions disk images (root, mkfs.ext4, loop devices), tried once
 * in `scratch` at start-up.
 */
export async function probeDiskImages(scratch: string, tools: ImageTools): Promise<string | undefined> {
  const file = join(scratch, 'probe.img');
  const mountPoint = join(scratch, 'probe');
  try {
    await makeDiskImage(file, mountPoint, 8, join(scratch, 'probe-templates'), tools);
    await unmountDiskImage(mountPoint);
    return undefined;
  } catch (err) {
    await unmountDiskImage(mountPoint).catch(() => undefined);
    return messageOf(err);
  } finally {
    await rm(file, { force: true });
    await rm(mountPoint, { recursive: true, force: true });
    await rm(join(scratch, 'probe-templates'), { recursive: true, force: true });
  }
}

/** Mount points (as the kernel names them: no links) strictly below `root`. */
export async function mountsBelow(root: string): Promise<string[]> {
  const real = await realpath(root).catch(() => root);
  return (await mountPoints()).filter((point) => point.startsWith(`${real}/`));
}

/** Whether `path` is a mount point (as the kernel names it: links resolved). */
export async function isMountPoint(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => path);
  return (await mountPoints()).includes(real);
}

/** Whether the mount at `path` (the last one there) is idmapped: a disk a worker killed while it was mounted left so. */
export async function isIdmappedMount(path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => path);
  const options = (await mountEntries()).filter((m) => m.point === real).at(-1)?.options ?? '';
  return options.split(',').includes('idmapped');
}

async function mountPoints(): Promise<string[]> {
  return (await mountEntries()).map((m) => m.point);
}

async function mountEntries(): Promise<{ point: string; options: string }[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // Field 5 is the mount point, with space, tab, newline and backslash escaped as octal; field 6 the mount's options.
  return mountinfo
    .split('\n')
    .map((line) => line.split(' '))
    .map((fields) => ({
      point: (fields[4] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))),
      options: fields[5] ?? '',
    }))
    .filter((m) => m.point !== '');
}
