import assert from 'node:assert/strict';
import { test } from 'node:test';
import { confine, LAUNCHER_ENV, type Confinement } from '../../src/sandbox/launcher.js';

const tools = { bwrap: '/usr/bin/bwrap', setpriv: '/usr/bin/setpriv', prlimit: '/usr/bin/prlimit', env: '/usr/bin/env' };
const cgroup = { name: 'task-1', procsFiles: ['/sys/fs/cgroup/memory/x/cgroup.procs'] } as unknown as Confinement['cgroup'];
const confinement: Confinement = { tools, isolate: true, network: false, mounts: [{ host: '/data/ws', inside: '/workspace', writable: true }], owner: { uid: 200001, gid: 200001 }, cgroup, rlimits: { processes: 64 } };
const sessionEnv = { LD_PRELOAD: '/workspace/evil.so', LD_DEBUG_OUTPUT: '/root/x', PATH: '/env/bin:/usr/bin' };

test("the privileged part of a launch runs with the fixed launcher environment, never the session's", () => {
  const spec = confine(['/env/bin/python', '-u', '-'], '/workspace', sessionEnv, confinement);
  assert.deepEqual(Object.keys(spec.env).sort(), [...Object.keys(LAUNCHER_ENV), 'CODEGEN_CGROUP_PROCS'].sort());
  for (const value of Object.values(spec.env)) assert.doesNotMatch(value, /evil|\/root\/x/);
});

test("the session's environment is applied by `env -i` after setpriv's privilege drop, right before the command", () => {
  const spec = confine(['/env/bin/python', '-u', '-'], '/workspace', sessionEnv, confinement);
  const args = spec.args;
  const setpriv = args.indexOf('/usr/bin/setpriv');
  const env = args.indexOf('/usr/bin/env');
  assert.ok(args.indexOf('/usr/bin/bwrap') < setpriv && setpriv < env, args.join(' '));
  assert.ok(args.slice(setpriv).includes('--no-new-privs'));
  assert.deepEqual(args.slice(env), ['/usr/bin/env', '-i', '--', 'LD_PRELOAD=/workspace/evil.so', 'LD_DEBUG_OUTPUT=/root/x', 'PATH=/env/bin:/usr/bin', '/env/bin/python', '-u', '-']);
  // Nothing before the drop names the session's variables.
  assert.ok(!args.slice(0, env).some((a) => a.includes('evil.so')));
});

test('unconfined (no bwrap, no cgroup), the environment is still applied by env -i as the last step', () => {
  const spec = confine(['python3', '-'], '/tmp', { A: '1' }, { ...confinement, isolate: false, owner: undefined, cgroup: undefined, rlimits: {} });
  assert.equal(spec.executable, '/usr/bin/env');
  assert.deepEqual(spec.args, ['-i', '--', 'A=1', 'python3', '-']);
  assert.deepEqual(spec.env, { ...LAUNCHER_ENV });
});
