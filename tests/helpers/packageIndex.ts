import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WheelSpec {
  name: string;
  version: string;
  /** module files, path → source */
  files: Record<string, string>;
  requires?: string[];
  /** module files of random bytes (base64 text, incompressible as stored), path → size in bytes */
  randomFiles?: Record<string, number>;
}

// Writes a pure-Python wheel with the standard library only: the layout pip installs from.
const BUILD_WHEEL = `
import base64, hashlib, json, os, sys, zipfile
spec = json.loads(sys.argv[1]); out = sys.argv[2]
name, version = spec["name"], spec["version"]
dist = name.replace("-", "_")
info = f"{dist}-{version}.dist-info"
meta = f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n" + "".join(f"Requires-Dist: {r}\\n" for r in spec.get("requires", []))
files = dict(spec["files"])
for p, size in spec.get("randomFiles", {}).items():
    files[p] = base64.b64encode(os.urandom(size * 3 // 4)).decode()
files[f"{info}/METADATA"] = meta
files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
record = []
path = f"{out}/{dist}-{version}-py3-none-any.whl"
with zipfile.ZipFile(path, "w") as z:
    for p, data in files.items():
        raw = data.encode()
        z.writestr(p, raw)
        digest = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()
        record.append(f"{p},sha256={digest},{len(raw)}")
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\\n".join(record) + "\\n")
print(path)
`;

export interface PackageIndex {
  /** The PEP 503 simple index URL, for WORKER_PIP_INDEX_URL. */
  url: string;
  /** Paths requested so far. */
  requests: string[];
  close(): Promise<void>;
}

/** Builds the given wheels and serves them as a PEP 503 simple index on loopback. */
export async function servePackageIndex(wheels: WheelSpec[]): Promise<PackageIndex> {
  const dir = await mkdtemp(join(tmpdir(), 'codegen-index-'));
  for (const wheel of wheels) await run('python3', ['-c', BUILD_WHEEL, JSON.stringify(wheel), dir]);
  const files = await readdir(dir);
  const normalise = (n: string) => n.toLowerCase().replace(/[-_.]+/g, '-');
  const requests: string[] = [];
  const server: Server = createServer(async (req, res) => {
    requests.push(req.url ?? '');
    const url = req.url ?? '/';
    const project = /^\/simple\/([^/]+)\/?$/.exec(url)?.[1];
    if (url === '/simple/' || url === '/simple') {
      res.setHeader('content-type', 'text/html');
      res.end(wheels.map((w) => `<a href="/simple/${normalise(w.name)}/">${w.name}</a>`).join('\n'));
      return;
    }
    if (project) {
      const matching = files.filter((f) => normalise(f.split('-')[0]!) === normalise(project));
      if (matching.length === 0) {
        res.statusCode = 404;
        res.end('not found');
        return;
      }
      const links = await Promise.all(
        matching.map(
          async (f) =>
            `<a href="/files/${f}#sha256=${createHash('sha256')
              .update(await readFile(join(dir, f)))
              .digest('hex')}">${f}</a>`,
        ),
      );
      res.setHeader('content-type', 'text/html');
      res.end(`<!DOCTYPE html><html><body>${links.join('\n')}</body></html>`);
      return;
    }
    const file = /^\/files\/([^/]+)$/.exec(url)?.[1];
    if (file && files.includes(file)) {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(await readFile(join(dir, file)));
      return;
    }
    res.statusCode = 404;
    res.end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
