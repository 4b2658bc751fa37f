import assert from 'node:assert/strict';
import { test } from 'node:test';
import { delegateCgroups, unenforcedLimits, unenforcedLimitsMessage } from '../../src/sandbox/confine/cgroupDelegation.js';
import { FakeCgroupV2Fs, fakeV1Fs } from '../helpers/fakeCgroupFs.js';

// Where the worker's cgroups go, over fake cgroupfs trees that keep the kernel's rules.

const B = '/sys/fs/cgroup';
const ALL = ['cpuset', 'cpu', 'io', 'memory', 'pids'];

test('v2 in a container (a private cgroup namespace): the worker and its init move into a leaf, then the controllers pass on', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(B, [1, 7]);
  const placed = delegateCgroups(fs, '0::/\n', B)!;
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
  const placed = delegateCgroups(fs, '0::/system.slice/worker.service\n', B)!;
  assert.deepEqual([placed.parents.unified, placed.movedInto, placed.missing], [unit, `${unit}/worker`, []]);
  assert.deepEqual(fs.procs(`${unit}/worker`), [4242]);
});

test('v2 restarted in its container (already in the leaf, the parent passing controllers on): nothing moves, nothing nests', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false);
  fs.group(`${B}/worker`, [1]);
  const placed = delegateCgroups(fs, '0::/worker\n', B)!;
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
  const placed = delegateCgroups(fs, '0::/\n', B)!;
  assert.deepEqual(placed.missing, []);
  assert.deepEqual(
    fs.procs(`${B}/worker`).sort((a, b) => a - b),
    [1, 99],
  );
});

test('v2: a controller not delegated to the group is named, with the group and the parent to fix', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(`${B}/pod`, [1], ['memory', 'pids']);
  const placed = delegateCgroups(fs, '0::/pod\n', B)!;
  assert.deepEqual(
    placed.missing.map((m) => m.controller),
    ['cpu'],
  );
  assert.match(placed.missing[0]!.why, /cpu controller is not delegated to the worker's cgroup \/pod .*cgroup\.subtree_control lacks \+cpu/);
  assert.deepEqual(placed.controllers, ['memory', 'pids'], 'the others still pass on');
  assert.deepEqual(fs.subtreeControl(`${B}/pod`), ['memory', 'pids']);
});

test("v2 on a host whose root shell's scope lacks cpu: the subtree hangs off the real root, and nothing moves", () => {
  const scope = `${B}/user.slice/user-0.slice/session-1.scope`;
  const fs = new FakeCgroupV2Fs(B, ALL, true).group(scope, [300, 301], ['memory', 'pids']);
  const placed = delegateCgroups(fs, '0::/user.slice/user-0.slice/session-1.scope\n', B)!;
  assert.deepEqual([placed.parents.unified, placed.movedInto, placed.missing], [B, undefined, []]);
  assert.deepEqual(fs.procs(scope).sort(), [300, 301], "the shell's processes stay where they are");
});

test('v2 read-only (an unprivileged container): every controller missing, saying why', () => {
  const fs = new FakeCgroupV2Fs(B, ALL, false).group(B, [1]);
  fs.readOnly = true;
  const placed = delegateCgroups(fs, '0::/\n', B)!;
  assert.deepEqual(placed.controllers, []);
  assert.deepEqual(
    placed.missing.map((m) => m.controller),
    ['memory', 'cpu', 'pids'],
  );
  assert.match(placed.missing[0]!.why, /EROFS: the cgroupfs is mounted read-only/);
});

test('v1: each hierarchy under its own group; one not mounted is named', () => {
  const self = '12:pids:/a\n5:memory:/a\n4:cpu,cpuacct:/a\n1:name=systemd:/a\n';
  const all = delegateCgroups(fakeV1Fs(B, ['memory', 'cpu', 'cpuacct', 'pids']), self, B)!;
  assert.deepEqual([all.version, all.controllers, all.missing], ['v1', ['memory', 'cpu', 'pids'], []]);
  assert.equal(all.parents.pids, `${B}/pids/a`);
  const noPids = delegateCgroups(fakeV1Fs(B, ['memory', 'cpu', 'cpuacct']), self, B)!;
  assert.deepEqual(noPids.controllers, ['memory', 'cpu']);
  assert.deepEqual(noPids.missing, [{ controller: 'pids', why: `no pids hierarchy is mounted at ${B}/pids` }]);
  assert.equal(delegateCgroups(fakeV1Fs(B, []), self, B), undefined, 'no cgroupfs at all');
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
