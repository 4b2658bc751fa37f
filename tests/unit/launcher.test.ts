import assert from 'node:assert/strict';
import { test } from 'node:test';
import { confine, type Confinement } from '../../src/sandbox/confine/launcher.js';
import { ROOT_ENV } from '../../src/sandbox/process/hostTools.js';

const tools = { bwrap: '/usr/bin/bwrap', setpriv: '/usr/bin/setpriv', prlimit: '/usr/bin/prlimit', env: '/usr/bin/env', nsenter: '/usr/bin/nsenter' };
const cgroup: Confinement['cgroup'] = { procsFiles: ['/sys/fs/cgroup/memory/x/cgroup.procs'], killProcesses: () => Promise.resolve(true) };
const confinement: Confinement = {
  tools,
  isolate: true,
  network: 'none',
  mounts: [{ host: '/data/ws', inside: '/workspace', writable: true }],
  owner: { uid: 200001, gid: 200001 },
  cgroup,
  rlimits: { processes: 64 },
};
const sessionEnv = { LD_PRELOAD: '/workspace/evil.so', LD_DEBUG_OUTPUT: '/root/x', PATH: '/env/bin:/usr/bin' };

test("the privileged part of a launch runs with the fixed launcher environment, never the session's", () => {
  const spec = confine(['/env/bin/python', '-u', '-'], '/workspace', sessionEnv, confinement);
  assert.deepEqual(Object.keys(spec.env).sort(), [...Object.keys(ROOT_ENV), 'CODEGEN_CGROUP_PROCS'].sort());
  for (const value of Object.values(spec.env)) assert.doesNotMatch(value, /evil|\/root\/x/);
});

test("the session's environment is applied by `env -i` after setpriv's privilege drop, right before the command", () => {
  const spec = confine(['/env/bin/python', '-u', '-'], '/workspace', sessionEnv, confinement);
  const args = spec.args;
  const setpriv = args.indexOf('/usr/bin/setpriv');
  const env = args.indexOf('/usr/bin/env');
  assert.ok(args.indexOf('/usr/bin/bwrap') < setpriv && setpriv < env, args.join(' '));
  assert.ok(args.slice(setpriv).includes('--no-new-privs'));
  assert.deepEqual(args.slice(env), [
    '/usr/bin/env',
    '-i',
    '-C',
    '/workspace',
    '--',
    'LD_PRELOAD=/workspace/evil.so',
    'LD_DEBUG_OUTPUT=/root/x',
    'PATH=/env/bin:/usr/bin',
    '/env/bin/python',
    '-u',
    '-',
  ]);
  // Nothing before the drop names the session's variables.
  assert.ok(!args.slice(0, env).some((a) => a.includes('evil.so')));
});

test('unconfined (no bwrap, no cgroup), the environment is still applied by env -i as the last step', () => {
  const spec = confine(['python3', '-'], '/tmp', { A: '1' }, { ...confinement, isolate: false, owner: undefined, cgroup: undefined, rlimits: {} });
  assert.equal(spec.executable, '/usr/bin/env');
  assert.deepEqual(spec.args, ['-i', '--', 'A=1', 'python3', '-']);
  assert.deepEqual(spec.env, { ...ROOT_ENV });
});

/** The bwrap part of a spec's command line: from bwrap to its `--`. */
function bwrapArgs(spec: { executable: string; args: string[] }): string[] {
  const args = [spec.executable, ...spec.args];
  const start = args.indexOf('/usr/bin/bwrap');
  assert.ok(start >= 0, 'bwrap is run');
  return args.slice(start + 1, args.indexOf('--', start));
}

/** Index of a consecutive run of arguments, -1 when absent. */
function indexOfRun(args: string[], run: string[]): number {
  for (let i = 0; i + run.length <= args.length; i++) if (run.every((a, j) => args[i + j] === a)) return i;
  return -1;
}

const isolated = (over: Partial<Confinement> = {}): Confinement => ({ ...confinement, cgroup: undefined, rlimits: {}, ...over });

test('a root launch enters fresh ipc/pid/uts namespaces, and no network unless allowed', () => {
  const closed = bwrapArgs(confine(['true'], '/workspace', {}, isolated()));
  for (const flag of ['--unshare-ipc', '--unshare-pid', '--unshare-uts', '--unshare-cgroup-try', '--unshare-net', '--die-with-parent', '--new-session'])
    assert.ok(closed.includes(flag), flag);
  assert.ok(!closed.includes('--unshare-all'), 'root runs bwrap without a user namespace');
  assert.ok(!closed.includes('/etc/resolv.conf'));

  const host = bwrapArgs(confine(['true'], '/workspace', {}, isolated({ network: 'host' })));
  assert.ok(!host.includes('--unshare-net'));
  assert.ok(indexOfRun(host, ['--ro-bind-try', '/etc/resolv.conf', '/etc/resolv.conf']) >= 0, 'name resolution with the network');
});

test("a session's network: its namespace joined as root before bubblewrap, its own resolv.conf", () => {
  const spec = confine(['true'], '/workspace', {}, isolated({ network: { namespace: '/run/netns/codegen-2-7', resolvConf: '/data/resolv.conf' } }));
  const argv = [spec.executable, ...spec.args];
  const nsenter = argv.indexOf('/usr/bin/nsenter');
  assert.ok(nsenter >= 0 && nsenter < argv.indexOf('/usr/bin/bwrap'), argv.join(' '));
  assert.deepEqual(argv.slice(nsenter, nsenter + 3), ['/usr/bin/nsenter', '--net=/run/netns/codegen-2-7', '--']);
  const args = bwrapArgs(spec);
  assert.ok(!args.includes('--unshare-net'), 'bubblewrap keeps the namespace it was started in');
  assert.ok(indexOfRun(args, ['--ro-bind', '/data/resolv.conf', '/etc/resolv.conf']) >= 0, args.join(' '));
});

test('a root launch drops to the session uid with setpriv: no groups, no capabilities, no new privileges', () => {
  const spec = confine(['true'], '/workspace', {}, isolated({ owner: { uid: 200007, gid: 200008 } }));
  const setpriv = spec.args.indexOf('/usr/bin/setpriv');
  assert.deepEqual(spec.args.slice(setpriv, spec.args.indexOf('/usr/bin/env')), [
    '/usr/bin/setpriv',
    '--reuid=200007',
    '--regid=200008',
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    '--',
  ]);
});

test('a non-root launch uses a user namespace with uid 1000 and no capabilities, and no setpriv', () => {
  const spec = confine(['true'], '/workspace', {}, isolated({ owner: undefined }));
  const args = bwrapArgs(spec);
  assert.ok(indexOfRun(args, ['--unshare-all', '--uid', '1000', '--gid', '1000', '--cap-drop', 'ALL']) >= 0, args.join(' '));
  assert.ok(!spec.args.includes('/usr/bin/setpriv'));
});

test('a non-root launch with the network allowed keeps the network', () => {
  const args = bwrapArgs(confine(['true'], '/workspace', {}, isolated({ owner: undefined, network: 'host' })));
  assert.ok(!args.includes('--unshare-all') || args.indexOf('--share-net') > args.indexOf('--unshare-all'), args.slice(0, 8).join(' '));
  assert.ok(!args.includes('--unshare-net'));
  const closed = bwrapArgs(confine(['true'], '/workspace', {}, isolated({ owner: undefined, network: 'none' })));
  assert.ok(!closed.includes('--share-net'), 'no network unless allowed');
  const root = bwrapArgs(confine(['true'], '/workspace', {}, isolated({ network: 'host' })));
  assert.ok(!root.includes('--share-net'), 'a root launch shares the network by not unsharing it');
});

test('mounts: writable ones bound read-write, others read-only, each after its parents are made traversable', () => {
  const mounts = [
    { host: '/data/ws', inside: '/workspace', writable: true },
    { host: '/data/env', inside: '/opt/venvs/session/env', writable: false },
  ];
  const args = bwrapArgs(confine(['true'], '/workspace', {}, isolated({ mounts })));
  const ws = indexOfRun(args, ['--bind', '/data/ws', '/workspace']);
  const env = indexOfRun(args, ['--ro-bind', '/data/env', '/opt/venvs/session/env']);
  assert.ok(ws >= 0 && env >= 0, args.join(' '));
  const parents = ['/opt', '/opt/venvs', '/opt/venvs/session'].map((dir) => indexOfRun(args, ['--perms', '0755', '--dir', dir]));
  assert.ok(
    parents.every((p) => p >= 0),
    'every parent is made 0755',
  );
  assert.ok(parents[0]! < parents[1]! && parents[1]! < parents[2]! && parents[2]! < env, 'outermost first, all before the mount');
  assert.equal(indexOfRun(args, ['--dir', '/workspace']), -1, 'a mount at the top needs no parent');
});

test('the sandbox gets a read-only /usr, a traversable /etc, its own /proc, /dev and a private sticky /tmp, and starts in cwd (entered unprivileged)', () => {
  const args = bwrapArgs(confine(['true'], '/workspace/sub', {}, isolated()));
  assert.ok(indexOfRun(args, ['--ro-bind', '/usr', '/usr']) >= 0);
  assert.ok(indexOfRun(args, ['--perms', '0755', '--dir', '/etc']) >= 0);
  assert.ok(indexOfRun(args, ['--proc', '/proc', '--dev', '/dev']) >= 0);
  const tmp = indexOfRun(args, ['--perms', '1777', '--size', String(256 * 1024 * 1024), '--tmpfs', '/tmp']);
  assert.ok(tmp >= 0);
  // bwrap (privileged) enters only the sandbox's root; cwd (maybe through the session's links) is
  // entered by env -C, after setpriv's drop.
  assert.deepEqual(args.slice(-2), ['--chdir', '/'], args.join(' '));
  assert.equal(indexOfRun(args, ['--chdir', '/workspace/sub']), -1, 'bwrap never resolves cwd');
  const all = confine(['true'], '/workspace/sub', {}, isolated()).args;
  const enter = indexOfRun(all, ['/usr/bin/env', '-i', '-C', '/workspace/sub', '--']);
  const drop = all.findIndex((a) => a.startsWith('--reuid='));
  assert.ok(drop >= 0 && drop < enter, all.join(' '));
  assert.ok(!args.some((a, i) => (a === '--bind' || a === '--ro-bind') && args[i + 1] === '/'), 'the host root is never shown');
});

test('rlimits become prlimit arguments before everything else; unset or zero limits are left out', () => {
  const spec = confine(
    ['true'],
    '/w',
    {},
    { ...confinement, isolate: false, cgroup: undefined, rlimits: { addressSpaceBytes: 1 << 30, processes: 64, fileSizeBytes: 0, openFiles: 4096 } },
  );
  assert.equal(spec.executable, '/usr/bin/prlimit');
  assert.deepEqual(spec.args.slice(0, 4), ['--as=1073741824', '--nproc=64', '--nofile=4096', '--']);
  assert.deepEqual(spec.args.slice(4, 7), ['/usr/bin/env', '-i', '--']);
  const isolatedSpec = confine(['true'], '/w', {}, isolated({ rlimits: { fileSizeBytes: 10 } }));
  assert.deepEqual([isolatedSpec.executable, ...isolatedSpec.args.slice(0, 3)], ['/usr/bin/prlimit', '--fsize=10', '--', '/usr/bin/bwrap']);
});

test('a seccomp filter is loaded by bwrap from descriptor 3 and handed over with the spec; unisolated there is none', () => {
  const filter = Buffer.from([6, 0, 0, 0, 0, 0, 0xff, 0x7f]);
  const spec = confine(['true'], '/w', {}, isolated({ seccomp: filter }));
  const args = bwrapArgs(spec);
  assert.ok(indexOfRun(args, ['--seccomp', '3']) >= 0);
  assert.equal(spec.filter, filter);
  const plain = confine(['true'], '/w', {}, isolated());
  assert.ok(!plain.args.includes('--seccomp'));
  assert.equal(plain.filter, undefined);
  const unisolated = confine(['true'], '/w', {}, { ...isolated({ seccomp: filter }), isolate: false });
  assert.equal(unisolated.filter, undefined);
  assert.ok(!unisolated.args.includes('--seccomp'));
});

test('with a cgroup, /bin/sh joins each cgroup.procs file as root, then execs the rest of the chain', () => {
  const withCgroup: Confinement['cgroup'] = {
    procsFiles: ['/sys/fs/cgroup/memory/a/cgroup.procs', '/sys/fs/cgroup/pids/a/cgroup.procs'],
    killProcesses: () => Promise.resolve(true),
  };
  const spec = confine(['python3'], '/workspace', {}, isolated({ cgroup: withCgroup }));
  assert.equal(spec.executable, '/bin/sh');
  assert.equal(spec.args[0], '-c');
  assert.match(spec.args[1]!, /for f in \$CODEGEN_CGROUP_PROCS; do echo \$\$ > "\$f" \|\| exit 125; done; unset CODEGEN_CGROUP_PROCS; exec "\$@"/);
  assert.equal(spec.args[2], 'codegen-launch', '$0 of the script');
  assert.equal(spec.args[3], '/usr/bin/bwrap', 'the chain follows as "$@"');
  assert.equal(spec.env.CODEGEN_CGROUP_PROCS, '/sys/fs/cgroup/memory/a/cgroup.procs /sys/fs/cgroup/pids/a/cgroup.procs');
  assert.equal(spec.cwd, '/', 'isolated: bwrap changes directory itself');
  assert.equal(confine(['python3'], '/host/ws', {}, { ...confinement, isolate: false }).cwd, '/host/ws');
});

test('isolating without bubblewrap installed is an error, not an unconfined launch', () => {
  assert.throws(() => confine(['true'], '/w', {}, isolated({ tools: { ...tools, bwrap: undefined } })), /bubblewrap is not installed/);
});
