// Generated file trees for round trips (checkpoints, forks): names of any bytes Linux allows,
// links pointing anywhere, modes, sizes and times, and how to make one on disk.
import { chmodSync, lutimesSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { bytesOf } from '../../src/storage/byteNames.js';

export type Node =
  | { kind: 'file'; bytes: Uint8Array; mode: number; mtime: number }
  | { kind: 'link'; target: Uint8Array; mtime: number }
  | { kind: 'dir'; mode: number; mtime: number; children: [Uint8Array, Node][] };

const SLASH = 0x2f;
/** A name: any bytes but '/' and NUL, not '.' or '..'; backslashes, bytes above 0x7f, spaces and newlines favoured. */
const nameByte = fc.oneof(
  fc.constantFrom(0x5c, 0xe9, 0xff, 0x80, 0xc3, 0xa9, 0x20, 0x0a, 0x2e, 0x2d, 0x7e),
  fc.integer({ min: 1, max: 255 }).filter((b) => b !== SLASH),
  fc.integer({ min: 0x61, max: 0x7a }),
);
const name = fc
  .array(nameByte, { minLength: 1, maxLength: 12 })
  .map((bytes) => Uint8Array.from(bytes))
  .filter((b) => !(b.length === 1 && b[0] === 0x2e) && !(b.length === 2 && b[0] === 0x2e && b[1] === 0x2e));
/** A link target: anything a link may hold (absolute, climbing, through `..` after a name, dangling, not UTF-8). */
const target = fc.oneof(
  fc.constantFrom('/etc/passwd', '/workspace/a', '../../..', 'sub/../sub/a.txt', '.', '..', '/', 'a\\b'),
  fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 30 }).map((b) => Buffer.from(Uint8Array.from(b)).toString('latin1')),
);
/** Milliseconds since 1970 to the microsecond, from 1970 to 2096. */
const time = fc.integer({ min: 0, max: 4_000_000_000_000_000 }).map((us) => us / 1000);
const fileMode = fc.constantFrom(0o644, 0o600, 0o755, 0o400, 0o777, 0o4755, 0o2750, 0o1644, 0o000);
const dirMode = fc.constantFrom(0o755, 0o700, 0o1777, 0o555, 0o2775);
const content = fc.oneof(
  { weight: 40, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  // Past 4 MB a file is streamed into the archive in chunks rather than read whole.
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 5 << 20 }).map((n) => Uint8Array.from(Buffer.alloc(n, n % 251))) },
);

export const tree = fc.letrec<{ node: Node; dir: Node & { kind: 'dir' } }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ kind: fc.constant('file' as const), bytes: content, mode: fileMode, mtime: time }),
    fc.record({ kind: fc.constant('link' as const), target: target.map((t) => bytesOf(t)), mtime: time }),
    tie('dir'),
  ),
  dir: fc.record({
    kind: fc.constant('dir' as const),
    mode: dirMode,
    mtime: time,
    children: fc.uniqueArray(fc.tuple(name, tie('node')), { maxLength: 5, selector: ([n]) => Buffer.from(n).toString('latin1') }),
  }),
}));

/** Makes `node` at `at` (bytes); directory modes and times last, after their contents. */
export function make(at: Buffer, node: Node): void {
  if (node.kind === 'file') {
    writeFileSync(at, node.bytes);
    chmodSync(at, node.mode);
    utimesSync(at, node.mtime / 1000, node.mtime / 1000);
  } else if (node.kind === 'link') {
    symlinkSync(Buffer.from(node.target), at);
    lutimesSync(at, node.mtime / 1000, node.mtime / 1000);
  } else {
    mkdirSync(at);
    for (const [child, inner] of node.children) make(Buffer.concat([at, Buffer.from('/'), child]), inner);
    chmodSync(at, node.mode);
    utimesSync(at, node.mtime / 1000, node.mtime / 1000);
  }
}
