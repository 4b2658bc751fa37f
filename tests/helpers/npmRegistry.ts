import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

/** One entry of a package tarball, as written: a file, a directory or a link (any name, `..` and absolute ones included). */
export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'hardlink';
  data?: string;
  /** The target of a link. */
  link?: string;
  mode?: number;
}

export interface NpmPackageSpec {
  name: string;
  version: string;
  /** Files of the package (path → contents), below `package/` in the tarball. */
  files?: Record<string, string>;
  /** Fields of its package.json (and of the packument's version entry): dependencies, scripts, bin, main… */
  manifest?: Record<string, unknown>;
  /** Entries written as they are, after the package's own (for tarballs a registry should not serve). */
  rawEntries?: TarEntry[];
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar archive of `entries`, written by hand so a test can put anything in it. */
export function tarOf(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.type === undefined || entry.type === 'file' ? (entry.data ?? '') : '');
    const header = Buffer.alloc(512);
    const name = Buffer.from(entry.name);
    if (name.length > 100) throw new Error(`tar name too long for this writer: ${entry.name}`);
    name.copy(header, 0);
    const type = { file: '0', hardlink: '1', symlink: '2', directory: '5' }[entry.type ?? 'file'];
    header.write(octal(entry.mode ?? (entry.type === 'directory' ? 0o755 : 0o644), 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(data.length, 12), 124);
    header.write(octal(1_700_000_000, 12), 136);
    header.write('        ', 148);
    header.write(type, 156);
    if (entry.link) header.write(entry.link, 157);
    header.write('ustar\0', 257);
    header.write('00', 263);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** The gzipped tarball npm would publish for `spec` (plus its raw entries). */
export function tarballOf(spec: NpmPackageSpec): Buffer {
  const manifest = { name: spec.name, version: spec.version, ...spec.manifest };
  const files: Record<string, string> = { 'package.json': JSON.stringify(manifest, null, 2), ...spec.files };
  const entries: TarEntry[] = Object.entries(files).map(([path, data]) => ({ name: `package/${path}`, data, mode: 0o644 }));
  return gzipSync(tarOf([...entries, ...(spec.rawEntries ?? [])]));
}

export interface NpmRegistry {
  /** The registry's URL, for WORKER_NPM_REGISTRY. */
  url: string;
  /** Paths requested so far. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Serves packuments and tarballs of the given packages on loopback, as the npm registry does:
 * GET /<name> (a scoped name's slash as %2f) is the packument, GET /<name>/-/<file>.tgz a tarball.
 */
export async function serveNpmRegistry(packages: NpmPackageSpec[]): Promise<NpmRegistry> {
  const requests: string[] = [];
  const tarballs = new Map<string, Buffer>();
  let base = '';
  const packument = (name: string) => {
    const versions = packages.filter((p) => p.name === name);
    const latest = versions.at(-1);
    if (!latest) return undefined;
    return {
      name,
      'dist-tags': { latest: latest.version },
      versions: Object.fromEntries(
        versions.map((p) => {
          const file = `${name.replace(/^@[^/]+\//, '')}-${p.version}.tgz`;
          const tarball = tarballOf(p);
          tarballs.set(`/${name}/-/${file}`, tarball);
          const integrity = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
          const shasum = createHash('sha1').update(tarball).digest('hex');
          return [p.version, { name, version: p.version, ...p.manifest, dist: { tarball: `${base}/${name}/-/${file}`, integrity, shasum } }];
        }),
      ),
    };
  };
  const server: Server = createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '/');
    requests.push(url);
    const body = tarballs.get(url) ?? (url.includes('/-/') ? undefined : packument(url.slice(1)));
    if (body === undefined) {
      res.statusCode = 404;
      res.setHeader('content-type', 'application/json');
      res.end('{"error":"not found"}');
      return;
    }
    if (Buffer.isBuffer(body)) {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(body);
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  for (const name of new Set(packages.map((p) => p.name))) packument(name); // tarballs known before any packument is asked for
  return {
    url: `${base}/`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
