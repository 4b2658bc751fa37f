import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import { test } from 'node:test';
import { sandboxSeccompProgram } from '../../src/sandbox/confine/seccomp.js';

// The filter is classic BPF as the kernel runs it: decoded here and run by a small interpreter of
// the four instructions it uses, against the system calls it must refuse and those it must not.

interface Instruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
const ALLOW = 0x7fff0000;
const EPERM = 0x00050000 | 1;
const ENOSYS = 0x00050000 | 38;

function decode(program: Buffer): Instruction[] {
  assert.equal(program.length % 8, 0, 'a whole number of 8-byte instructions');
  return Array.from({ length: program.length / 8 }, (_, i) => ({
    code: program.readUInt16LE(i * 8),
    jt: program.readUInt8(i * 8 + 2),
    jf: program.readUInt8(i * 8 + 3),
    k: program.readUInt32LE(i * 8 + 4),
  }));
}

/** Runs the filter on seccomp_data { nr, arch, ip, args[6] } (args given as their low halves). */
function run(instructions: Instruction[], nr: number, arch: number, arg0 = 0): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr | 0, 0);
  data.writeUInt32LE(arch >>> 0, 4);
  data.writeUInt32LE(arg0 >>> 0, 16);
  let acc = 0;
  for (let pc = 0, steps = 0; steps < 1000; steps++) {
    const ins = instructions[pc];
    assert.ok(ins, `execution ran off the program at ${pc}`);
    switch (ins.code) {
      case LD_W_ABS:
        acc = data.readUInt32LE(ins.k);
        pc++;
        break;
      case JEQ_K:
        pc += 1 + (acc === ins.k >>> 0 ? ins.jt : ins.jf);
        break;
      case JGE_K:
        pc += 1 + (acc >= ins.k >>> 0 ? ins.jt : ins.jf);
        break;
      case JSET_K:
        pc += 1 + ((acc & ins.k) !== 0 ? ins.jt : ins.jf);
        break;
      case RET_K:
        return ins.k >>> 0;
      default:
        assert.fail(`unexpected opcode 0x${ins.code.toString(16)} at ${pc}`);
    }
  }
  assert.fail('the filter did not return');
}

const supported = process.platform === 'linux' && endianness() === 'LE' && (process.arch === 'x64' || process.arch === 'arm64');
const skip = supported ? false : `no filter is made for ${process.platform}/${process.arch}`;

const X64 = {
  audit: 0xc000003e,
  read: 0,
  write: 1,
  openat: 257,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  bpf: 321,
  userfaultfd: 323,
  perf_event_open: 298,
  io_uring_setup: 425,
  unshare: 272,
  setns: 308,
  clone: 56,
  clone3: 435,
  execve: 59,
  execveat: 322,
};
const ARM64 = {
  audit: 0xc00000b7,
  read: 63,
  write: 64,
  openat: 56,
  keyctl: 219,
  add_key: 217,
  request_key: 218,
  bpf: 280,
  userfaultfd: 282,
  perf_event_open: 241,
  io_uring_setup: 425,
  unshare: 97,
  setns: 268,
  clone: 220,
  clone3: 435,
  execve: 221,
  execveat: 281,
};
const nr = process.arch === 'arm64' ? ARM64 : X64;
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWNET = 0x40000000;
const CLONE_NEWNS = 0x00020000;
const THREAD_FLAGS = 0x003d0f00; // what pthread_create passes: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID

test('the program checks the architecture first and ends in return instructions', { skip }, () => {
  const program = decode(sandboxSeccompProgram()!);
  assert.deepEqual(program[0], { code: LD_W_ABS, jt: 0, jf: 0, k: 4 }, 'loads seccomp_data.arch');
  assert.equal(program[1]!.code, JEQ_K);
  assert.equal(program[1]!.k, nr.audit);
  assert.equal(program[1]!.jt, 0, 'the right architecture falls through');
  assert.equal(program.at(-1)!.code, RET_K);
  assert.equal(program.at(-1)!.k, EPERM);
  assert.ok(program.some((i) => i.code === RET_K && i.k === ALLOW));
  assert.ok(program.some((i) => i.code === RET_K && i.k === ENOSYS));
});

test('every jump lands on an instruction of the program, forward', { skip }, () => {
  for (const options of [{}, { denyExec: true }, { denyProcesses: true }]) {
    const program = decode(sandboxSeccompProgram(options)!);
    program.forEach((ins, pc) => {
      if (ins.code === RET_K || ins.code === LD_W_ABS) return;
      for (const offset of [ins.jt, ins.jf]) assert.ok(pc + 1 + offset < program.length, `jump at ${pc} by ${offset} leaves the program`);
    });
  }
});

test('ordinary system calls are allowed; the keyring, bpf, userfaultfd, perf, io_uring and namespace calls fail with EPERM', { skip }, () => {
  const program = decode(sandboxSeccompProgram()!);
  for (const call of ['read', 'write', 'openat', 'execve', 'execveat'] as const) assert.equal(run(program, nr[call], nr.audit), ALLOW, call);
  for (const call of ['keyctl', 'add_key', 'request_key', 'bpf', 'userfaultfd', 'perf_event_open', 'io_uring_setup', 'unshare', 'setns'] as const)
    assert.equal(run(program, nr[call], nr.audit), EPERM, call);
});

test('clone is allowed for processes and threads but not with namespace flags; clone3 answers ENOSYS', { skip }, () => {
  const program = decode(sandboxSeccompProgram()!);
  assert.equal(run(program, nr.clone, nr.audit, 17 /* SIGCHLD: fork */), ALLOW);
  assert.equal(run(program, nr.clone, nr.audit, THREAD_FLAGS), ALLOW);
  for (const flag of [CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER | 17])
    assert.equal(run(program, nr.clone, nr.audit, flag), EPERM, `0x${flag.toString(16)}`);
  assert.equal(run(program, nr.clone3, nr.audit), ENOSYS, 'so the C library falls back to clone');
});

test('a system call of another architecture is refused', { skip }, () => {
  const program = decode(sandboxSeccompProgram()!);
  assert.equal(run(program, 0, 0x40000003 /* i386 */), EPERM);
  assert.equal(run(program, nr.read, nr.audit === X64.audit ? ARM64.audit : X64.audit), EPERM);
});

test('x32 system calls (the 0x40000000 bit) are refused on x86_64', { skip: process.arch === 'x64' ? skip : 'x86_64 only' }, () => {
  const program = decode(sandboxSeccompProgram()!);
  assert.equal(run(program, 0x40000000 | X64.read, X64.audit), EPERM);
});

test('denyExec adds exactly execve and execveat to the refused calls', { skip }, () => {
  const plain = decode(sandboxSeccompProgram()!);
  const noExec = decode(sandboxSeccompProgram({ denyExec: true })!);
  assert.equal(noExec.length, plain.length + 2, 'two more comparisons');
  assert.equal(run(noExec, nr.execve, nr.audit), EPERM);
  assert.equal(run(noExec, nr.execveat, nr.audit), EPERM);
  for (const call of ['read', 'openat'] as const) assert.equal(run(noExec, nr[call], nr.audit), ALLOW, call);
  assert.equal(run(noExec, nr.keyctl, nr.audit), EPERM);
  assert.equal(run(noExec, nr.clone, nr.audit, 17), ALLOW);
});

test('denyProcesses refuses fork, vfork and a clone that is not a thread; threads, exec and the rest still work', { skip }, () => {
  const program = decode(sandboxSeccompProgram({ denyProcesses: true })!);
  assert.equal(run(program, nr.clone, nr.audit, THREAD_FLAGS), ALLOW, 'a thread');
  assert.equal(run(program, nr.clone, nr.audit, 17 /* SIGCHLD: fork */), EPERM);
  assert.equal(run(program, nr.clone, nr.audit, 0x00004100 | 17 /* VM|VFORK: posix_spawn */), EPERM);
  assert.equal(run(program, nr.clone, nr.audit, THREAD_FLAGS | CLONE_NEWNET), EPERM, 'namespaces still refused');
  assert.equal(run(program, nr.clone3, nr.audit), ENOSYS);
  if (process.arch === 'x64') for (const call of [57 /* fork */, 58 /* vfork */]) assert.equal(run(program, call, X64.audit), EPERM, String(call));
  for (const call of ['read', 'openat', 'execve'] as const) assert.equal(run(program, nr[call], nr.audit), ALLOW, call);
});
