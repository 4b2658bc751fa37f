import { endianness } from 'node:os';

/**
 * A seccomp filter for sandboxed processes, compiled to classic BPF here (what bubblewrap's
 * `--seccomp FD` loads): system calls that let a session reach beyond its sandbox or the
 * kernel's less guarded corners fail with EPERM. Chief among them the keyring calls: the kernel
 * keeps a keyring per uid that outlives every process, so a session could leave a key for the
 * next session given the same uid. Also refused: bpf, userfaultfd, perf_event_open, io_uring,
 * and new namespaces (unshare, setns, clone with namespace flags; clone3, whose flags a filter
 * cannot read, answers ENOSYS so the C library falls back to clone).
 */

interface Arch {
  audit: number;
  /** System call numbers of this architecture. */
  nr: Record<
    | 'add_key'
    | 'request_key'
    | 'keyctl'
    | 'bpf'
    | 'userfaultfd'
    | 'perf_event_open'
    | 'io_uring_setup'
    | 'io_uring_enter'
    | 'io_uring_register'
    | 'unshare'
    | 'setns'
    | 'clone'
    | 'clone3'
    | 'execve'
    | 'execveat',
    number
  > &
    Partial<Record<'fork' | 'vfork', number>>;
  /** x32 system calls carry this bit on x86_64: refused wholesale. */
  x32Bit?: number;
}

const ARCHES: Record<string, Arch> = {
  x64: {
    audit: 0xc000003e,
    nr: {
      add_key: 248,
      request_key: 249,
      keyctl: 250,
      bpf: 321,
      userfaultfd: 323,
      perf_event_open: 298,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      unshare: 272,
      setns: 308,
      clone: 56,
      clone3: 435,
      execve: 59,
      execveat: 322,
      fork: 57,
      vfork: 58,
    },
    x32Bit: 0x40000000,
  },
  arm64: {
    audit: 0xc00000b7,
    nr: {
      add_key: 217,
      request_key: 218,
      keyctl: 219,
      bpf: 280,
      userfaultfd: 282,
      perf_event_open: 241,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      unshare: 97,
      setns: 268,
      clone: 220,
      clone3: 435,
      execve: 221,
      execveat: 281,
    },
  },
};

const DENIED = [
  'add_key',
  'request_key',
  'keyctl',
  'bpf',
  'userfaultfd',
  'perf_event_open',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
  'unshare',
  'setns',
] as const;
/** CLONE_THREAD: a clone that makes a thread, not a process. */
const CLONE_THREAD = 0x00010000;
/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET. */
const CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

// BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const SECCOMP_RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
// Offsets in struct seccomp_data: nr, arch, then args[6] (64-bit each; the low half first on little-endian).
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

type Instruction = [code: number, jt: number, jf: number, k: number];

/**
 * The filter for this host's architecture, or undefined where none is known (then none is used).
 * `denyExec` also refuses exec; `denyProcesses` refuses every new process (fork, vfork, a clone
 * without CLONE_THREAD) while threads still start: for a step that must run no other program,
 * applied by bubblewrap as the last thing before it starts the step's own.
 */
export function sandboxSeccompProgram(options: { denyExec?: boolean; denyProcesses?: boolean } = {}): Buffer | undefined {
  const arch = ARCHES[process.arch];
  if (!arch || process.platform !== 'linux' || endianness() !== 'LE') return undefined;
  const forks = options.denyProcesses ? [arch.nr.fork, arch.nr.vfork].filter((nr): nr is number => nr !== undefined) : [];
  const denied = [...[...DENIED, ...(options.denyExec ? (['execve', 'execveat'] as const) : [])].map((name) => arch.nr[name]), ...forks];
  // Labels are resolved to relative jumps below; every jump goes forward.
  const program: (Instruction | { jumpTo: string; code: number; k: number; onTrue: boolean } | { label: string })[] = [
    [LD_W_ABS, 0, 0, ARCH],
    { code: JEQ_K, k: arch.audit, jumpTo: 'deny', onTrue: false },
    [LD_W_ABS, 0, 0, NR],
    ...(arch.x32Bit ? [{ code: JGE_K, k: arch.x32Bit, jumpTo: 'deny', onTrue: true }] : []),
    ...denied.map((nr) => ({ code: JEQ_K, k: nr, jumpTo: 'deny', onTrue: true })),
    { code: JEQ_K, k: arch.nr.clone3, jumpTo: 'nosys', onTrue: true },
    { code: JEQ_K, k: arch.nr.clone, jumpTo: 'clone', onTrue: true },
    [RET_K, 0, 0, SECCOMP_RET_ALLOW],
    { label: 'clone' },
    [LD_W_ABS, 0, 0, ARG0_LOW],
    { code: JSET_K, k: CLONE_NAMESPACES, jumpTo: 'deny', onTrue: true },
    ...(options.denyProcesses ? [{ code: JSET_K, k: CLONE_THREAD, jumpTo: 'deny', onTrue: false }] : []),
    [RET_K, 0, 0, SECCOMP_RET_ALLOW],
    { label: 'nosys' },
    [RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS],
    { label: 'deny' },
    [RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM],
  ];
  const positions = new Map<string, number>();
  let index = 0;
  for (const item of program) {
    if ('label' in item) positions.set(item.label, index);
    else index++;
  }
  const instructions: Instruction[] = [];
  for (const item of program) {
    if ('label' in item) continue;
    if (Array.isArray(item)) {
      instructions.push(item);
      continue;
    }
    const offset = positions.get(item.jumpTo)! - instructions.length - 1;
    instructions.push(item.onTrue ? [item.code, offset, 0, item.k] : [item.code, 0, offset, item.k]);
  }
  const bytes = Buffer.alloc(instructions.length * 8);
  instructions.forEach(([code, jt, jf, k], i) => {
    bytes.writeUInt16LE(code, i * 8);
    bytes.writeUInt8(jt, i * 8 + 2);
    bytes.writeUInt8(jf, i * 8 + 3);
    bytes.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return bytes;
}
