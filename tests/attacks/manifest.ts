import type { TaskExecutionClient } from '../../gen/codegen/v1/task_execution.js';
import { runTool } from '../helpers/tasks.js';

/**
 * Python that prints, as JSON, every entry under /workspace (names as hex of their bytes, walked
 * from descriptors so trees deeper than PATH_MAX work): full st_mode, mtime floored to the µs,
 * a file's size and sha256, a link's target bytes. Paths over 300 bytes are keyed by length and hash.
 */
export const MANIFEST_PY = String.raw`
import os, json, hashlib, stat
out = {}
def walk(dfd, rel):
    for name in sorted(os.listdir(dfd)):
        b = os.fsencode(name)
        p = rel + [b]
        st = os.lstat(name, dir_fd=dfd)
        e = {'mode': oct(st.st_mode), 'mtime_us': st.st_mtime_ns // 1000}
        if stat.S_ISLNK(st.st_mode):
            e['target'] = os.fsencode(os.readlink(name, dir_fd=dfd)).hex()
        elif stat.S_ISDIR(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            walk(fd, p)
            os.close(fd)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
            h = hashlib.sha256()
            while True:
                c = os.read(fd, 1 << 20)
                if not c: break
                h.update(c)
            os.close(fd)
            e['sha'] = h.hexdigest()[:16]
            e['size'] = st.st_size
        k = b'/'.join(p)
        out[k.hex() if len(k) <= 300 else '%d:%s' % (len(k), hashlib.sha256(k).hexdigest()[:24])] = e
walk(os.open('/workspace', os.O_RDONLY | os.O_DIRECTORY), [])
print(json.dumps(out, sort_keys=True))
`;

export type Manifest = Record<string, Record<string, unknown>>;

export async function manifestOf(tasks: TaskExecutionClient, sessionId: string): Promise<Manifest> {
  const out = await runTool(tasks, sessionId, 'run.python', { code: MANIFEST_PY });
  return JSON.parse(out.stdout!) as Manifest;
}

/** Entries that differ, with their names readable (hex decoded, escaped). */
export function differences(before: Manifest, after: Manifest): string[] {
  const name = (hex: string) => (hex.includes(':') ? `path of ${hex}` : JSON.stringify(Buffer.from(hex, 'hex').toString('latin1')).slice(0, 120));
  const diffs: string[] = [];
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = JSON.stringify(before[key]);
    const b = JSON.stringify(after[key]);
    if (a !== b) diffs.push(`${name(key)}: saved ${a} restored ${b}`);
  }
  return diffs;
}
