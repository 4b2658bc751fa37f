import assert from 'node:assert/strict';
import { test } from 'node:test';
import { delegateCgroups, unenforcedLimits, unenforcedLimitsMessage } from '../../src/sandbox/confine/cgroupDelegation.js';
import { FakeCgroupV2Fs, fakeV1Fs } from '../helpers/fakeCgroupFs.js';

// Where the worker's cgroups go, over fake cgroupfs trees that keep the kernel's rules.

const B = '/sys/fs/cgroup';
const ALL = ['cpuset', 'cpu', 'io', 'memory', 'pids'];
/** /proc/self/mountinfo's cgroup lines: v2 at the top of what the worker sees, v1's hierarchies likewise. */
const MOUNTED_V2 = `35 24 0:30 / ${B} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n`;
const MOUNTED_V1 = ['memory', 'cpu,cpuacct', 'pids'].map((h, i) => `${40 + i} 31 0:${50 + i} / ${B}/${h} rw,relatime - cgroup cgroup rw,${h}`).join('\n');

test('v2 in a container (a private cgroup namespace): the worker and its init move into a leaf, then the controllers pass on', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(B, [1, 7]);
  const placed = delegateCgroups(fs, '0::/\n', MOUNTED_V2, B)!;
  assert.deepEqual(placed.missing, []);
  assert.deepEqual(placed.controllers, ['memory', 'cpu', 'pids']);
  assert.equal(placed.parents.unified, B);
  assert.equal(placed.movedInto, `${B}/worker`);
  assert.deepEqual(fs.procs(B), [], 'the namespace root holds no process now');
  assert.deepEqual(fs.procs(`${B}/worker`).sort(), [1, 7]);
  assert.deepEqual(fs.subtreeControl(B), ['cpu', 'memory', 'pids']);
  // What the worker then makes below it takes the controllers (its sessions' groups get limits).
  fs.mkdir(`${B}/codegen-7`);
  assert.match(fs.read(`${B}/codegen-7/cgroup.controllers`), /memory/);
});

test('v2 on a host, in a unit with Delegate=yes: its own group, emptied into a leaf', () => {
  const unit = `${B}/system.slice/worker.service`;
  const fs = new FakeCgroupV2Fs(B, ALL, true).group(unit, [4242]);
  fs.delegatedGroups.add(unit);
  const placed = delegateCgroups(fs, '0::/system.slice/worker.service\n', MOUNTED_V2, B)!;
  assert.deepEqual([placed.parents.unified, placed.movedInto, placed.missing], [unit, `${unit}/worker`, []]);
  assert.deepEqual(fs.procs(`${unit}/worker`), [4242]);
});

test('v2 restarted in its container (already in the leaf, the parent passing controllers on): nothing moves, nothing nests', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false);
  fs.group(`${B}/worker`, [1]);
  const placed = delegateCgroups(fs, '0::/worker\n', MOUNTED_V2, B)!;
  // Its own group is the leaf an earlier start moved it into: the subtree goes beside it again.
  assert.deepEqual([placed.parents.unified, placed.movedInto, placed.missing], [B, `${B}/worker`, []]);
  assert.deepEqual(fs.procs(`${B}/worker`), [1]);
});

test('v2: a process joining between the move and the enabling (an exec into the container) is moved too', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(B, [1]);
  let joined = false;
  fs.beforeEnable = (group) => {
    if (group === B && fs.procs(`${B}/worker`).length > 0 && !joined) {
      joined = true;
      fs.join(99, B);
    }
  };
  const placed = delegateCgroups(fs, '0::/\n', MOUNTED_V2, B)!;
  assert.deepEqual(placed.missing, []);
  assert.deepEqual(
    fs.procs(`${B}/worker`).sort((a, b) => a - b),
    [1, 99],
  );
});

test('v2: a controller not delegated to the group is named, with the group and the parent to fix', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(`${B}/pod`, [1], ['memory', 'pids']);
  fs.delegatedGroups.add(`${B}/pod`);
  const placed = delegateCgroups(fs, '0::/pod\n', MOUNTED_V2, B)!;
  assert.deepEqual(
    placed.missing.map((m) => m.controller),
    ['cpu'],
  );
  assert.match(placed.missing[0]!.why, /cpu controller is not delegated to the worker's cgroup \/pod .*cgroup\.subtree_control lacks \+cpu/);
  assert.deepEqual(placed.controllers, ['memory', 'pids'], 'the others still pass on');
  assert.deepEqual(fs.subtreeControl(`${B}/pod`), ['memory', 'pids']);
});

// Found by a review: a group nobody delegated was taken over (a login scope's shell and sshd moved
// into worker/), or, lacking a controller, the subtree went to the real root, outside the unit's or
// pod's limits and left behind when it ended.
test('v2 in a group nobody delegated (a login scope, a unit without Delegate=yes): nothing is moved or made, and it says why', () => {
  for (const controllers of [ALL, ['memory', 'pids']]) {
    const scope = `${B}/user.slice/user-0.slice/session-1.scope`;
    const fs = new FakeCgroupV2Fs(B, ALL, true).group(scope, [300, 301, 302], controllers);
    const placed = delegateCgroups(fs, '0::/user.slice/user-0.slice/session-1.scope\n', MOUNTED_V2, B)!;
    assert.deepEqual(placed.controllers, []);
    assert.deepEqual(
      placed.missing.map((m) => m.controller),
      ['memory', 'cpu', 'pids'],
    );
    assert.match(placed.missing[0]!.why, /cgroup \/user\.slice\/user-0\.slice\/session-1\.scope is not delegated to it .*Delegate=yes/);
    assert.deepEqual(fs.procs(scope).sort(), [300, 301, 302], 'its processes stay where they are');
    assert.deepEqual(fs.subtreeControl(scope), []);
    assert.deepEqual(fs.subtreeControl(B), controllers === ALL ? ALL.slice().sort() : ['memory', 'pids'], 'the root untouched');
  }
});

// Found by a review: v1 in a container without a cgroup namespace shows the container's own group
// mounted, while /proc/self/cgroup names it from the hierarchy's top: every mkdir was ENOENT.
test("v1 or v2 with the worker's own group mounted (no cgroup namespace): paths are taken below the mount's top", () => {
  const pod = '/kubepods/burstable/pod1/abc';
  const self = `12:pids:${pod}\n5:memory:${pod}\n4:cpu,cpuacct:${pod}\n`;
  const mountinfo = ['memory', 'cpu,cpuacct', 'pids'].map((h, i) => `${40 + i} 31 0:${50 + i} ${pod} ${B}/${h} rw,relatime - cgroup cgroup rw,${h}`).join('\n');
  const v1 = delegateCgroups(fakeV1Fs(B, ['memory', 'cpu', 'cpuacct', 'pids']), self, mountinfo, B)!;
  assert.deepEqual([v1.parents.memory, v1.parents.cpu, v1.parents.pids], [`${B}/memory`, `${B}/cpu`, `${B}/pids`]);
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(B, [1]);
  const v2 = delegateCgroups(fs, `0::${pod}\n`, `35 24 0:30 ${pod} ${B} rw - cgroup2 cgroup2 rw\n`, B)!;
  assert.deepEqual([v2.parents.unified, v2.missing], [B, []], 'the mount is the top of what it sees: its own to manage');
});

test('v2 read-only (an unprivileged container): every controller missing, saying why', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(B, [1]);
  fs.readOnly = true;
  const placed = delegateCgroups(fs, '0::/\n', MOUNTED_V2, B)!;
  assert.deepEqual(placed.controllers, []);
  assert.deepEqual(
    placed.missing.map((m) => m.controller),
    ['memory', 'cpu', 'pids'],
  );
  assert.match(placed.missing[0]!.why, /EROFS: the cgroupfs is mounted read-only/);
});

test('v1: each hierarchy under its own group; one not mounted is named', () => {
  const self = '12:pids:/a\n5:memory:/a\n4:cpu,cpuacct:/a\n1:name=systemd:/a\n';
  const all = delegateCgroups(fakeV1Fs(B, ['memory', 'cpu', 'cpuacct', 'pids']), self, MOUNTED_V1, B)!;
  assert.deepEqual([all.version, all.controllers, all.missing], ['v1', ['memory', 'cpu', 'pids'], []]);
  assert.equal(all.parents.pids, `${B}/pids/a`);
  const noPids = delegateCgroups(fakeV1Fs(B, ['memory', 'cpu', 'cpuacct']), self, MOUNTED_V1, B)!;
  assert.deepEqual(noPids.controllers, ['memory', 'cpu']);
  assert.deepEqual(noPids.missing, [{ controller: 'pids', why: `no pids hierarchy is mounted at ${B}/pids` }]);
  assert.equal(delegateCgroups(fakeV1Fs(B, []), self, MOUNTED_V1, B), undefined, 'no cgroupfs at all');
});

test('the start-up refusal names each missing controller, why, the fix, and the development switch', () => {
  const notRoot = unenforcedLimits(undefined, 'the worker is not running as root');
  assert.deepEqual(
    notRoot.map((m) => m.controller),
    ['memory', 'cpu', 'pids'],
  );
  const line = unenforcedLimitsMessage(notRoot);
  assert.doesNotMatch(line, /\n/, 'one line');
  assert.match(line, /\(memory, cpu, pids\): the worker is not running as root\. Fix: .*Delegate=yes.*WORKER_ALLOW_UNENFORCED_LIMITS=true/);
  const some = unenforcedLimits({ root: {}, missing: [{ controller: 'pids', why: 'x' }] }, 'unused');
  assert.deepEqual(some, [{ controller: 'pids', why: 'x' }]);
  assert.deepEqual(unenforcedLimits({ root: {}, missing: [] }, 'unused'), []);
});
