import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { existingCgroup } from '../../src/sandbox/confine/cgroups.js';

// What the cgroup classes write and read, for v1 and v2, over directory trees standing in for
// cgroupfs (plain files: the kernel's answers are the files' contents). The end-to-end tier runs
// them on this machine's real cgroups (v1).

const root = mkdtempSync(join(tmpdir(), 'codegen-cgroup-files-'));
after(() => rmSync(root, { recursive: true, force: true }));
const read = (path: string) => readFileSync(path, 'utf8');

test('v2: a child passes the controllers on, takes limits in memory.max, cpu.max and pids.max, counts OOM kills since renewal, and renews to unlimited', async () => {
  const base = join(root, 'v2');
  mkdirSync(base, { recursive: true });
  const worker = existingCgroup('v2', '', base);
  const session = await worker.child('session-1', { memoryBytes: 64 << 20, cpuPercent: 150, maxProcesses: 100 });
  const dir = join(base, 'session-1');
  assert.equal(read(join(dir, 'cgroup.subtree_control')), '+memory +cpu +pids');
  assert.equal(read(join(dir, 'memory.max')), String(64 << 20));
  assert.equal(read(join(dir, 'cpu.max')), '150000 100000');
  assert.equal(read(join(dir, 'pids.max')), '100');
  writeFileSync(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n');
  assert.equal(await session.oomKills(), 2);
  writeFileSync(join(dir, 'cgroup.procs'), '');
  session.renew();
  assert.deepEqual([read(join(dir, 'memory.max')), read(join(dir, 'cpu.max')), read(join(dir, 'pids.max'))], ['max', 'max 100000', 'max']);
  assert.equal(await session.oomKills(), 0, 'counted from the renewal on');
  writeFileSync(join(dir, 'memory.events'), 'oom_kill 5\n');
  assert.equal(await session.oomKills(), 3);
  writeFileSync(join(dir, 'cpu.stat'), 'usage_usec 1500\nuser_usec 1000\n');
  assert.equal(await session.cpuUsageNs(), 1_500_000);
  writeFileSync(join(dir, 'memory.stat'), 'anon 4096\nfile 8192\n');
  assert.equal(await session.memoryBytes(), 4096, 'anonymous memory, not the file cache');
  writeFileSync(join(dir, 'cgroup.procs'), '12\n34\n');
  assert.deepEqual([session.pids(), session.holds(34), session.holds(56)], [[12, 34], true, false]);
});

test('v1: a child in each hierarchy, limits in each controller’s files (swap too), fork refusals and OOM kills counted since renewal', async () => {
  const hierarchies = { memory: join(root, 'v1/memory/w'), cpu: join(root, 'v1/cpu/w'), cpuacct: join(root, 'v1/cpuacct/w'), pids: join(root, 'v1/pids/w') };
  for (const dir of Object.values(hierarchies)) mkdirSync(dir, { recursive: true });
  writeFileSync(join(hierarchies.memory, 'memory.memsw.limit_in_bytes'), '');
  const worker = existingCgroup('v1', 'w', hierarchies);
  const task = await worker.child('task-1', { memoryBytes: 1 << 30, cpuPercent: 50, maxProcesses: 8 });
  const at = (h: keyof typeof hierarchies, file: string) => join(hierarchies[h], 'task-1', file);
  // The swap file exists only where the kernel accounts swap; here it is made for the test.
  writeFileSync(at('memory', 'memory.memsw.limit_in_bytes'), '');
  await task.setLimits({ memoryBytes: 1 << 30 });
  assert.equal(read(at('memory', 'memory.limit_in_bytes')), String(1 << 30));
  assert.equal(read(at('memory', 'memory.memsw.limit_in_bytes')), String(1 << 30), 'no swapping past the limit');
  assert.deepEqual([read(at('cpu', 'cpu.cfs_period_us')), read(at('cpu', 'cpu.cfs_quota_us'))], ['100000', '50000']);
  assert.equal(read(at('pids', 'pids.max')), '8');
  writeFileSync(at('pids', 'pids.events'), 'max 4\n');
  writeFileSync(at('memory', 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n');
  assert.deepEqual([await task.forkRefusals(), await task.oomKills()], [4, 1]);
  task.renew();
  assert.deepEqual([await task.forkRefusals(), await task.oomKills()], [0, 0]);
  assert.deepEqual(
    [
      read(at('memory', 'memory.memsw.limit_in_bytes')),
      read(at('memory', 'memory.limit_in_bytes')),
      read(at('cpu', 'cpu.cfs_quota_us')),
      read(at('pids', 'pids.max')),
    ],
    ['-1', '-1', '-1', 'max'],
  );
  writeFileSync(at('cpuacct', 'cpuacct.usage'), '123456\n');
  assert.equal(await task.cpuUsageNs(), 123456);
  writeFileSync(at('memory', 'memory.stat'), 'cache 10\nrss 20\ntotal_cache 30\ntotal_rss 40\n');
  assert.equal(await task.memoryBytes(), 40, 'the group and its children, without the cache');
});

for (const version of ['v1', 'v2'] as const) {
  test(`${version}: a kill under way is joined, never left behind to kill the group's next processes`, async (t) => {
    // A call cancelled kills its group twice at once (its abort, and the end of its run). Two
    // loops end apart: the group went back to the pool, a child forked ahead of the next call
    // was placed in it, and the loop still under way read it there and killed it.
    const dir = join(root, `${version}-kill`);
    mkdirSync(dir, { recursive: true });
    const group = version === 'v1' ? existingCgroup('v1', 'task', { memory: dir }) : existingCgroup('v2', 'task', dir);
    const procs = join(dir, 'cgroup.procs');
    const sleeper = () => {
      const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
      t.after(() => child.kill('SIGKILL'));
      return child;
    };
    const first = sleeper();
    const firstExited = new Promise((resolve) => first.once('exit', resolve));
    writeFileSync(procs, `${first.pid}\n`);
    const abortKill = group.killProcesses();
    await firstExited;
    writeFileSync(procs, ''); // the kernel's answer once the process is reaped
    assert.equal(await group.killProcesses(), true, 'the group is empty');
    // The group's next user, before the first loop is awaited: it ended with the second.
    const next = sleeper();
    writeFileSync(procs, `${next.pid}\n`);
    assert.equal(await abortKill, true, 'the first kill ended when the group was seen empty');
    assert.equal(next.exitCode ?? next.signalCode, null, "the next user's process lives");
  });
}
