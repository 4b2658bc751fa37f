import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ModuleSpec {
  path: string;
  version: string;
  /** Files of the module (path in the module → contents); go.mod is added. */
  files?: Record<string, string>;
  /** Its go.mod's require lines (`example.com/dep v1.0.0`). */
  requires?: string[];
  /** The whole go.mod instead of the generated one. */
  goMod?: string;
  /**
   * Zip entries as given (name not prefixed; a symlink entry when `symlink` is set) instead of
   * the module's files: a malicious proxy's zip.
   */
  rawEntries?: { name: string; data?: string; symlink?: string }[];
  /** Files of random bytes (path in the module → size): a module as large as a test needs. */
  randomFiles?: Record<string, number>;
}

export interface GoProxy {
  /** The proxy's URL, for WORKER_GOPROXY. */
  url: string;
  /** Paths requested so far. */
  requests: string[];
  /** Stops serving (connections refused) until start(). */
  stop(): Promise<void>;
  /** Serves again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

// A module zip as the go command fetches it: every entry under `module@version/`.
const BUILD_ZIP = `
import base64, io, json, os, sys, zipfile
entries = json.loads(sys.argv[1])
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    for e in entries:
        info = zipfile.ZipInfo(e["name"], (2024, 1, 1, 0, 0, 0))
        if "symlink" in e:
            info.external_attr = 0o120777 << 16
            z.writestr(info, e["symlink"])
        else:
            info.external_attr = 0o100644 << 16
            z.writestr(info, os.urandom(e["random"]) if "random" in e else e.get("data", ""))
sys.stdout.write(base64.b64encode(buf.getvalue()).decode())
`;

function goModOf(spec: ModuleSpec): string {
  if (spec.goMod !== undefined) return spec.goMod;
  const requires = spec.requires?.length ? `\nrequire (\n${spec.requires.map((r) => `\t${r}\n`).join('')})\n` : '';
  return `module ${spec.path}\n\ngo 1.19\n${requires}`;
}

/**
 * A Go module proxy (the GOPROXY protocol: `<module>/@v/list`, `.info`, `.mod`, `.zip`,
 * `@latest`) serving the given modules on loopback, its zips built here.
 */
export async function serveGoProxy(modules: ModuleSpec[]): Promise<GoProxy> {
  const files = new Map<string, { type: string; body: Buffer }>();
  const versions = new Map<string, string[]>();
  for (const spec of modules) {
    const prefix = `${spec.path}@${spec.version}/`;
    const entries = spec.rawEntries ?? [
      { name: `${prefix}go.mod`, data: goModOf(spec) },
      ...Object.entries(spec.files ?? {}).map(([name, data]) => ({ name: `${prefix}${name}`, data })),
      ...Object.entries(spec.randomFiles ?? {}).map(([name, random]) => ({ name: `${prefix}${name}`, random })),
    ];
    const { stdout } = await run('python3', ['-c', BUILD_ZIP, JSON.stringify(entries)], { maxBuffer: 256 * 1024 * 1024 });
    const base = `/${spec.path}/@v/${spec.version}`;
    const info = Buffer.from(JSON.stringify({ Version: spec.version, Time: '2024-01-01T00:00:00Z' }));
    files.set(`${base}.info`, { type: 'application/json', body: info });
    files.set(`${base}.mod`, { type: 'text/plain', body: Buffer.from(goModOf(spec)) });
    files.set(`${base}.zip`, { type: 'application/zip', body: Buffer.from(stdout, 'base64') });
    versions.set(spec.path, [...(versions.get(spec.path) ?? []), spec.version]);
  }
  for (const [path, list] of versions) {
    files.set(`/${path}/@v/list`, { type: 'text/plain', body: Buffer.from(list.map((v) => `${v}\n`).join('')) });
    const latest = [...list].sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).pop()!;
    files.set(`/${path}/@latest`, files.get(`/${path}/@v/${latest}.info`)!);
  }
  const requests: string[] = [];
  let server: Server | undefined;
  let port = 0;
  const start = async () => {
    server = createServer((req, res) => {
      const url = decodeURIComponent((req.url ?? '/').split('?')[0]!);
      requests.push(url);
      const file = files.get(url);
      if (!file) {
        res.statusCode = 404;
        res.end('not found');
        return;
      }
      res.setHeader('content-type', file.type);
      res.end(file.body);
    });
    await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  };
  await start();
  return { url: `http://127.0.0.1:${port}`, requests, stop, start, close: stop };
}
