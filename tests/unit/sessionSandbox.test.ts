import assert from 'node:assert/strict';
import { test } from 'node:test';
import winston from 'winston';
import { deferred } from '../../src/deferred.js';
import type { Cgroup, CgroupLimits } from '../../src/sandbox/confine/cgroups.js';
import { FakeCgroup } from '../helpers/fakeCgroup.js';
import type { CodeCommand, InstallResult, Language, LanguageSandbox, PackageInstaller } from '../../src/sandbox/languages/language.js';
import type { ProcessResult, ProcessSpec, RunOptions, TaskLimits } from '../../src/sandbox/process/processSpec.js';
import type { SandboxContext } from '../../src/sandbox/session/sandboxContext.js';
import { SessionSandbox, type SessionSandboxParts } from '../../src/sandbox/session/sessionSandbox.js';
import type { SessionStarters, SessionTaskGroups, WarmProcess } from '../../src/sandbox/session/sessionStarters.js';
import { WarmUnavailableError, type WarmProgram } from '../../src/sandbox/warm/warmInterpreter.js';
import type { LimitController } from '../../src/sandbox/confine/cgroupDelegation.js';

// SessionSandbox's decisions, with its host reached only through fakes (sessionStarters.ts):
// which calls are forked warm and which start cold, the limits a task's group gets, which limit
// ended a call, one install at a time, and a broken warm process replaced.

const MB = 1024 * 1024;
const logger = winston.createLogger({ silent: true });

const installer: PackageInstaller = {
  name: 'fake',
  parse: (text) => text.split('\n'),
  stages: [],
  errorLine: /^ERROR/,
  installedNames: (requirements) => [...requirements],
};

/** A language whose warm interpreter (when `warm`) runs code itself; else it offers a plain zygote. */
function fakeLanguage(options: { warm: boolean; install?: (requirements: string[]) => Promise<InstallResult> }): Language {
  return {
    name: 'fake',
    describe: () => ({}),
    systemMounts: [],
    toolchainPath: [],
    prepareHost: () => Promise.resolve(),
    selfCheck: { code: '', isolated: '', plain: '' },
    outOfMemory: /\bMemoryError\b/,
    createEnvironment: () => Promise.resolve(),
    checkEnvironment: () => Promise.resolve(),
    runCommand: (environment): CodeCommand => ({ command: [`${environment}/bin/fake`, '-'], env: { FAKE: '1' } }),
    warmCommand: (environment, socket) => (options.warm ? [`${environment}/bin/fake`, '--warm', socket] : undefined),
    zygoteCommand: (socket) => ['/usr/bin/zygote', socket],
    installer,
    installerCacheInside: '/cache',
    install: (_: LanguageSandbox, requirements: string[]) => (options.install ?? (() => Promise.resolve(installed([]))))(requirements),
    installedPackages: () => Promise.resolve([]),
    machineSpecific: [],
    writablePaths: [],
  };
}

const exited = (exitCode: number, extra: Partial<ProcessResult> = {}): ProcessResult => ({
  exitCode,
  stdout: { text: '', truncated: false },
  stderr: { text: '', truncated: false },
  outputLimitExceeded: false,
  ...extra,
});

const installed = (names: string[]): InstallResult => ({
  ...exited(0),
  killedBy: undefined,
  installed: names.map((name) => ({ name, version: '1', requested: true })),
});

/** Starters that record what the sandbox asked of them. */
class FakeStarters implements SessionStarters {
  clock = 1_000_000;
  colds: ProcessSpec[] = [];
  warmStarts = 0;
  warmStartFails = false;
  warms: FakeWarm[] = [];
  groups: FakeCgroup[] = [];
  given: (FakeCgroup | undefined)[] = [];
  free: number | undefined = 100 * MB;
  coldResult: ProcessResult = exited(0);
  /** Arranges each task group as it is taken (the kernel's counters a call leaves). */
  onGroup: (group: FakeCgroup) => void = () => undefined;
  cold = (spec: ProcessSpec): Promise<ProcessResult> => {
    this.colds.push(spec);
    return Promise.resolve(this.coldResult);
  };
  /** The process specs warm processes were started with. */
  warmLaunches: ProcessSpec[] = [];
  warm = (_socket: string, _owner: unknown, launch: ProcessSpec): Promise<WarmProcess> => {
    this.warmStarts++;
    this.warmLaunches.push(launch);
    if (this.warmStartFails) return Promise.reject(new Error('no zygote today'));
    const warm = new FakeWarm();
    this.warms.push(warm);
    return Promise.resolve(warm);
  };
  taskGroups = (): SessionTaskGroups => ({
    take: (limits: CgroupLimits) => {
      const group = new FakeCgroup(`task-${this.groups.length + 1}`);
      group.limits.push(limits);
      this.onGroup(group);
      this.groups.push(group);
      return Promise.resolve(group);
    },
    giveBack: (group: Cgroup | undefined) => void this.given.push(group as FakeCgroup | undefined),
    reserve: () => undefined,
    dispose: () => Promise.resolve(),
  });
  freeBytes = () => Promise.resolve(this.free);
  now = () => this.clock;
}

class FakeWarm implements WarmProcess {
  alive = true;
  programs: WarmProgram[] = [];
  closed = false;
  next: () => Promise<ProcessResult> = () => Promise.resolve(exited(0));
  /** The group its child forked ahead waits in, given to the next call that claims it. */
  ahead: FakeCgroup | undefined;
  /** The group each run was given. */
  groups: Cgroup[] = [];
  run(program: WarmProgram, _options: RunOptions, group: Cgroup): Promise<ProcessResult> {
    this.programs.push(program);
    this.groups.push(group);
    return this.next();
  }
  claimAhead(): Promise<Cgroup | undefined> {
    const ahead = this.ahead;
    this.ahead = undefined;
    return Promise.resolve(ahead);
  }
  close(): Promise<void> {
    this.closed = true;
    this.alive = false;
    return Promise.resolve();
  }
}

interface Setup {
  version?: 'v1' | 'v2';
  warmLanguage?: boolean;
  warmInterpreter?: boolean;
  cgroup?: boolean;
  controllers?: LimitController[];
  limits?: { maxMemoryMb: number; maxCpuPercent: number };
  diskMb?: number;
  install?: (requirements: string[]) => Promise<InstallResult>;
  sessionGroup?: FakeCgroup;
}

function sandboxWith(setup: Setup = {}): { sandbox: SessionSandbox; starters: FakeStarters } {
  const language = fakeLanguage({ warm: setup.warmLanguage ?? true, install: setup.install });
  const root = new FakeCgroup('root');
  const host: SandboxContext = {
    options: {
      mode: 'bwrap',
      network: { defaultMode: 'none', maxMode: 'open', dnsServers: [], installerSources: [] },
      languages: [language],
      dirs: { scratch: '/fake/scratch', diskTemplates: '/fake/templates', network: '/fake/network' },
      maxProcesses: 256,
      maxTaskOutputBytes: 64 * MB,
      warmInterpreter: setup.warmInterpreter ?? true,
      uidBase: undefined,
      logger,
    },
    cgroups: { version: setup.version ?? 'v1', controllers: setup.controllers ?? ['memory', 'cpu', 'pids'], missing: [], root },
    tools: { bwrap: '/usr/bin/bwrap', setpriv: '/usr/bin/setpriv', prlimit: '/usr/bin/prlimit', env: '/usr/bin/env', nsenter: '/usr/bin/nsenter' },
    seccomp: undefined,
    caBundle: undefined,
  };
  const parts: SessionSandboxParts = {
    workspace: '/fake/workspace',
    environment: '/fake/env',
    language,
    env: { SESSION: 'yes' },
    owner: { uid: 200_001, gid: 200_001 },
    installer: { uid: 200_000, gid: 200_000 },
    cgroup: setup.cgroup === false ? undefined : (setup.sessionGroup ?? new FakeCgroup('session')),
    limits: { maxMemoryMb: 512, maxCpuPercent: 100, maxDiskMb: setup.diskMb ?? 0, ...setup.limits },
    disk: setup.diskMb ? { mountPoint: '/fake/disk', mb: setup.diskMb, baselineBytes: 0 } : undefined,
    scratch: '/fake/scratch',
    controlDir: '/fake/ctl',
    network: 'none',
  };
  const starters = new FakeStarters();
  return { sandbox: new SessionSandbox(host, parts, () => Promise.resolve(), starters), starters };
}

const options = (): RunOptions => ({ signal: new AbortController().signal, maxCaptureBytes: MB, onOutput: () => undefined });
const noTaskLimits: TaskLimits = { maxMemoryMb: 0, maxCpuPercent: 0 };

test("a language's warm interpreter runs code itself; a plain zygote is given the command, code on stdin; both start once", async () => {
  const own = sandboxWith({ warmLanguage: true });
  await own.sandbox.runCode('print(1)', options(), noTaskLimits);
  await own.sandbox.runCode('print(2)', options(), noTaskLimits);
  assert.deepEqual(own.starters.warms[0]!.programs, [{ code: 'print(1)' }, { code: 'print(2)' }]);
  assert.equal(own.starters.warmStarts, 1);
  assert.deepEqual(own.starters.colds, []);

  const plain = sandboxWith({ warmLanguage: false });
  await plain.sandbox.runCode('console.log(1)', options(), noTaskLimits);
  const [program] = plain.starters.warms[0]!.programs;
  assert.ok('exec' in program!);
  assert.deepEqual(program.exec.argv, ['/env/bin/fake', '-']);
  assert.equal(program.exec.stdin, 'console.log(1)');
  assert.equal(program.exec.cwd, '/workspace');
  assert.equal(program.exec.env.SESSION, 'yes', "the session's own variables reach the code");
});

test('calls start cold when the session cannot have a warm process: turned off, no cgroup, or no memory or pids controller', async () => {
  for (const setup of [{ warmInterpreter: false }, { cgroup: false }, { controllers: ['cpu', 'pids'] }, { controllers: ['memory', 'cpu'] }] as Setup[]) {
    const { sandbox, starters } = sandboxWith(setup);
    await sandbox.runShell('true', [], options(), noTaskLimits);
    assert.equal(starters.warmStarts, 0, JSON.stringify(setup));
    assert.equal(starters.colds.length, 1, JSON.stringify(setup));
  }
});

test('a call the warm process gives up on runs cold; the next call is forked warm again', async () => {
  const { sandbox, starters } = sandboxWith();
  await sandbox.runCode('1', options(), noTaskLimits);
  starters.warms[0]!.next = () => Promise.reject(new WarmUnavailableError('busy'));
  await sandbox.runCode('2', options(), noTaskLimits);
  assert.equal(starters.colds.length, 1, 'that call ran cold');
  starters.warms[0]!.next = () => Promise.resolve(exited(0));
  await sandbox.runCode('3', options(), noTaskLimits);
  assert.equal(starters.colds.length, 1);
  assert.equal(starters.warmStarts, 1, 'the same warm process');
  await assert.rejects(
    (async () => {
      starters.warms[0]!.next = () => Promise.reject(new Error('something else'));
      await sandbox.runCode('4', options(), noTaskLimits);
    })(),
    /something else/,
    'other failures are the call’s, not a reason to run it again cold',
  );
});

test('a warm process that died is replaced by the next call; one that cannot start is tried again only after a minute', async () => {
  const { sandbox, starters } = sandboxWith();
  await sandbox.runCode('1', options(), noTaskLimits);
  starters.warms[0]!.alive = false;
  await sandbox.runCode('2', options(), noTaskLimits);
  assert.equal(starters.warmStarts, 2);
  assert.deepEqual(starters.warms[1]!.programs, [{ code: '2' }]);

  const failing = sandboxWith();
  failing.starters.warmStartFails = true;
  await failing.sandbox.runCode('1', options(), noTaskLimits);
  await failing.sandbox.runCode('2', options(), noTaskLimits);
  assert.equal(failing.starters.warmStarts, 1, 'not retried at once');
  assert.equal(failing.starters.colds.length, 2);
  failing.starters.warmStartFails = false;
  failing.starters.clock += 60_000;
  await failing.sandbox.runCode('3', options(), noTaskLimits);
  assert.equal(failing.starters.warmStarts, 2);
  assert.equal(failing.starters.colds.length, 2, 'warm again once it started');
});

test("a task's group is limited only where the task narrows the session's limits", async () => {
  const cases: [TaskLimits, CgroupLimits][] = [
    [noTaskLimits, { memoryBytes: undefined, cpuPercent: undefined }],
    [
      { maxMemoryMb: 64, maxCpuPercent: 0 },
      { memoryBytes: 64 * MB, cpuPercent: undefined },
    ],
    [
      { maxMemoryMb: 4096, maxCpuPercent: 50 },
      { memoryBytes: undefined, cpuPercent: 50 },
    ],
    [
      { maxMemoryMb: 512, maxCpuPercent: 100 },
      { memoryBytes: undefined, cpuPercent: undefined },
    ],
  ];
  for (const [task, expected] of cases) {
    const { sandbox, starters } = sandboxWith({ limits: { maxMemoryMb: 512, maxCpuPercent: 100 } });
    await sandbox.runCode('x', options(), task);
    assert.deepEqual(starters.groups[0]!.limits, [expected], JSON.stringify(task));
  }
});

test('whatever a call leaves in its group is killed and the group given back, however the call ends', async () => {
  const { sandbox, starters } = sandboxWith();
  await sandbox.runCode('1', options(), noTaskLimits);
  starters.warms[0]!.next = () => Promise.reject(new Error('broke'));
  await assert.rejects(sandbox.runCode('2', options(), noTaskLimits), /broke/);
  assert.deepEqual(
    starters.groups.map((g) => g.kills),
    [1, 1],
  );
  assert.deepEqual(starters.given, starters.groups);
});

test('killed_by names the limit that ended a call: output, memory, pids, cpu, then a nearly full disk', async () => {
  const cases: [string, (s: FakeStarters) => void, string | undefined][] = [
    ['exit 0', () => undefined, undefined],
    ['exit 1', (s) => (s.coldResult = exited(1)), undefined],
    ['output', (s) => (s.coldResult = exited(0, { outputLimitExceeded: true })), 'output'],
    ['oom', (s) => ((s.coldResult = exited(137)), (s.onGroup = (g) => (g.oom = 1))), 'memory'],
    ['fork refused', (s) => (s.coldResult = exited(1, { forkRefused: true })), 'pids'],
    ['pids cgroup', (s) => ((s.coldResult = exited(1)), (s.onGroup = (g) => (g.refusals = 2))), 'pids'],
    ['SIGXCPU', (s) => (s.coldResult = exited(128 + 24)), 'cpu'],
    ['disk nearly full', (s) => ((s.coldResult = exited(1)), (s.free = MB)), 'disk'],
    ['disk with room', (s) => ((s.coldResult = exited(1)), (s.free = 50 * MB)), undefined],
  ];
  for (const [name, arrange, expected] of cases) {
    const { sandbox, starters } = sandboxWith({ warmInterpreter: false, diskMb: 100 });
    arrange(starters);
    const result = await sandbox.runShell('x', [], options(), noTaskLimits);
    assert.equal(result.killedBy, expected, name);
  }
  const noGroup = sandboxWith({ cgroup: false });
  noGroup.starters.coldResult = exited(1, { stderr: { text: 'Traceback…\nMemoryError\n', truncated: false } });
  assert.equal((await noGroup.sandbox.runCode('x', options(), noTaskLimits)).killedBy, 'memory', 'no cgroup: from the interpreter’s own words');
});

test('installs into one environment run one at a time, and each ends the warm process (new packages, new start-up hooks)', async () => {
  const order: string[] = [];
  const gates = [deferred(), deferred()];
  let calls = 0;
  const { sandbox, starters } = sandboxWith({
    install: async (requirements) => {
      const gate = gates[calls++]!;
      order.push(`start ${requirements[0]}`);
      await gate.promise;
      order.push(`end ${requirements[0]}`);
      return installed(requirements);
    },
  });
  await sandbox.runCode('1', options(), noTaskLimits);
  const first = sandbox.install(['a'], options(), 'user');
  const second = sandbox.install(['b'], options(), 'user');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, ['start a'], 'the second waits');
  gates[0]!.resolve();
  await first;
  assert.equal(starters.warms[0]!.closed, true);
  gates[1]!.resolve();
  await second;
  assert.deepEqual(order, ['start a', 'end a', 'start b', 'end b']);
  await sandbox.runCode('2', options(), noTaskLimits);
  assert.equal(starters.warmStarts, 2, 'a new warm process after the installs');
});

test("a call that narrows no limit runs in the group the warm process's child forked ahead waits in; one that narrows takes its own", async () => {
  const { sandbox, starters } = sandboxWith();
  await sandbox.runCode('print(0)', options(), noTaskLimits); // starts the warm process
  const warm = starters.warms[0]!;
  const taken = starters.groups.length;
  warm.ahead = new FakeCgroup('ahead-1');
  await sandbox.runCode('print(1)', options(), noTaskLimits);
  assert.equal(warm.groups.at(-1), warm.ahead ?? starters.given.at(-1), 'the claimed group');
  assert.equal(starters.given.at(-1)?.name, 'ahead-1', 'given back as any call group is');
  assert.equal(starters.groups.length, taken, 'no group taken');

  warm.ahead = new FakeCgroup('ahead-2');
  await sandbox.runCode('print(2)', options(), { maxMemoryMb: 64, maxCpuPercent: 0 });
  assert.equal(starters.groups.length, taken + 1, 'a narrowing call takes a group of its own');
  assert.equal((warm.groups.at(-1) as FakeCgroup).name, starters.groups.at(-1)!.name);
  assert.equal(warm.ahead?.name, 'ahead-2', 'and leaves the one forked ahead unclaimed');
});

test("on cgroup v2 the warm interpreter joins a leaf of the session's group (a group passing controllers on may hold no process); on v1 the group itself", async () => {
  for (const version of ['v1', 'v2'] as const) {
    const sessionGroup = new FakeCgroup('session');
    const { sandbox, starters } = sandboxWith({ version, sessionGroup });
    await sandbox.runCode('print(1)', options(), noTaskLimits);
    const joined = starters.warmLaunches[0]!.env.CODEGEN_CGROUP_PROCS ?? '';
    if (version === 'v2') {
      assert.ok(sessionGroup.alive.has('main'), 'the leaf is made');
      assert.match(joined, /\/fake\/main\/cgroup\.procs/);
      assert.doesNotMatch(joined, /\/fake\/session\/cgroup\.procs/);
    } else {
      assert.ok(!sessionGroup.alive.has('main'));
      assert.match(joined, /\/fake\/session\/cgroup\.procs/);
    }
  }
});
