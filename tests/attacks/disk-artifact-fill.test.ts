import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startWorker, type RunningWorker } from '../helpers/worker.js';
import { callTool, describeCall } from '../helpers/tasks.js';

// Promise B: at WORKER_DISK_OVERCOMMIT=1 a session's disk limit is a reservation against the
// data disk's free space, and nothing one session does gives another's disk a write error.
// The data disk here is a 600 MB ext4 of its own, so filling it harms nothing else on the host.

const MB = 1024 * 1024;
const scratch = mkdtempSync(join(tmpdir(), 'attack-disk-'));
const image = join(scratch, 'data.img');
const dataDir = join(scratch, 'data');
let worker: RunningWorker | undefined;

function mountSmallDataDisk(): void {
  execFileSync('truncate', ['-s', '600M', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
  execFileSync('mkdir', ['-p', dataDir]);
  execFileSync('mount', ['-o', 'loop', image, dataDir]);
}

after(async () => {
  await worker?.stop();
  // The worker leaves session disks mounted (a restart mounts them again): unmount them first.
  const below = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${dataDir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of below) execFileSync('umount', ['-l', point]);
  execFileSync('umount', ['-l', dataDir]);
  rmSync(scratch, { recursive: true, force: true });
});

/** PUTs `bytes` zero bytes to `url` in 1 MB chunks; its HTTP status. */
function putZeros(url: string, bytes: number, contentType: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers: { 'content-type': contentType, 'content-length': bytes } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(MB, 1);
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!req.write(chunk.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

test("a client's artifact uploads leave every session's reserved disk writable", async () => {
  mountSmallDataDisk();
  worker = await startWorker({
    dataDir,
    env: { WORKER_DISK_OVERCOMMIT: '1', WORKER_SPARE_SESSIONS: '0', WORKER_DEFAULT_DISK_MB: '16', WORKER_CACHE_DISK_MB: '32' },
  });
  // The victim reserves 150 MB of the data disk.
  const victim = await worker.sessions.createSession({
    workspaceId: 'victim',
    config: { language: 'python', limits: { maxDiskMb: 150, maxMemoryMb: 0, maxCpuPercent: 0, timeoutSeconds: 0 }, env: {} },
  });
  const attacker = await worker.sessions.createSession({ workspaceId: 'attacker' });
  const fs = statfsSync(dataDir);
  const free = fs.bavail * fs.bsize;
  // Everything free but 80 MB, in artifacts of the attacker's session (each well under WORKER_MAX_ARTIFACT_MB).
  const size = free - 80 * MB;
  const upload = await worker.artifacts.getUploadURL({
    sessionId: attacker.sessionId,
    artifactName: 'blob.bin',
    contentType: 'application/octet-stream',
    sizeBytes: size,
  });
  const status = await putZeros(upload.uploadUrl, size, 'application/octet-stream');
  const left = statfsSync(dataDir);
  console.log(
    `free before ${Math.round(free / MB)} MB, upload of ${Math.round(size / MB)} MB answered ${status}, free after ${Math.round((left.bavail * left.bsize) / MB)} MB`,
  );
  // The victim uses 120 MB of the 150 it was promised, fsynced, then writes again.
  const write = await callTool(
    worker.tasks,
    victim.sessionId,
    'run.python',
    {
      code: [
        'import os',
        "with open('/workspace/big', 'wb') as f:",
        '    for _ in range(120): f.write(os.urandom(1 << 20))',
        '    f.flush(); os.fsync(f.fileno())',
        "with open('/workspace/after', 'w') as f: f.write('still writable'); f.flush(); os.fsync(f.fileno())",
        "print('ok')",
      ].join('\n'),
    },
    120_000,
  );
  assert.equal(write.result?.status, 1, `the victim's write within its limit failed: ${describeCall(write)}`);
});
