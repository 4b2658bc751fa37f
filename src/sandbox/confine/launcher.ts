import { lstatSync, readlinkSync } from 'node:fs';
import type { ProcessGroup, ProcessSpec } from '../process/processSpec.js';
import { ROOT_ENV } from '../process/hostTools.js';
import type { Owner } from '../../storage/owner.js';

/**
 * What the sandbox shows at `inside`: a host directory bound there, or a symlink made there
 * (`link`, its target as the sandbox sees it: resolved inside, by the sandboxed process, so it
 * can lead nowhere the process could not go itself).
 */
export type Mount = { host: string; inside: string; writable: boolean } | { inside: string; link: string };

/** Absolute paths of the host programs confinement uses, resolved once at startup. */
export interface HostTools {
  bwrap: string | undefined;
  setpriv: string;
  prlimit: string;
  /** coreutils env: sets the session's environment as the very last step. */
  env: string;
  /** util-linux nsenter: joins a session's network namespace before bubblewrap starts. */
  nsenter: string;
}

/**
 * What a confined process's network is: none (a namespace of its own with only loopback), a
 * session's namespace (network/networkHost.ts: out only through the worker's egress proxy, with
 * the resolv.conf that says so; or, with no network, loopback alone and no resolv.conf), or the
 * host's (pkg.install's fetching step, as the installer uid).
 */
export type NetworkAccess = 'none' | 'host' | { namespace: string; resolvConf?: string | undefined };

export interface Confinement {
  tools: HostTools;
  /** bwrap: namespaces, a minimal read-only root, an unprivileged uid. none: the host as is. */
  isolate: boolean;
  network: NetworkAccess;
  mounts: Mount[];
  /** Host uid/gid the code runs as (root workers isolating); undefined: the worker's own, or a user namespace's. */
  owner: Owner | undefined;
  cgroup: ProcessGroup | undefined;
  /** A compiled seccomp filter bubblewrap loads (sandbox/confine/seccomp.ts); undefined: none. */
  seccomp?: Buffer | undefined;
  /** Fallbacks where cgroups are missing, and backstops where they are not. */
  rlimits: { addressSpaceBytes?: number | undefined; processes?: number | undefined; fileSizeBytes?: number | undefined; openFiles?: number | undefined };
}

// Joins the cgroups (as root, before dropping privileges), then becomes the next command.
// It runs with ROOT_ENV only: nothing of the session's reaches it.
const JOIN_CGROUPS = 'for f in $CODEGEN_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; unset CODEGEN_CGROUP_PROCS; exec "$@"';

/** The descriptor a launched process finds its seccomp filter on (see ProcessSpec.filter). */
export const SECCOMP_FD = 3;

/** The sandbox's private /tmp (RAM, charged to its memory cgroup). */
const TMP_BYTES = 256 * 1024 * 1024;

/** What of the host's root Python and the C library need, read-only. Resolved once. */
function systemMounts(): string[] {
  const args: string[] = ['--ro-bind', '/usr', '/usr'];
  for (const top of ['/bin', '/lib', '/lib64', '/sbin', '/lib32', '/libx32']) {
    try {
      const st = lstatSync(top);
      if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(top), top);
      else if (st.isDirectory()) args.push('--ro-bind', top, top);
    } catch {
      // not on this host
    }
  }
  // Directories bwrap makes for a mount's parents are 0700 unless made first: keep them traversable.
  args.push('--perms', '0755', '--dir', '/etc');
  for (const file of [
    '/etc/debian_version',
    '/etc/os-release',
    '/etc/ld.so.cache',
    '/etc/localtime',
    '/etc/mime.types',
    '/etc/nsswitch.conf',
    '/etc/hosts',
    '/etc/ssl',
    '/etc/ca-certificates',
  ]) {
    args.push('--ro-bind-try', file, file);
  }
  return args;
}

let systemMountArgs: string[] | undefined;

/** Drops to the session's uid inside the sandbox: no capabilities, no way to regain any. */
function dropPrivileges(setpriv: string, owner: Owner): string[] {
  return [setpriv, `--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--'];
}

/**
 * The command line that starts `command` confined: join the cgroups and apply rlimits (as the
 * worker), then, isolating, enter bubblewrap's namespaces with only the given mounts and drop to
 * the session's uid there. A root worker runs bubblewrap as root (so it can mount what the
 * session's uid could not reach) without a user namespace, so files the code writes belong to
 * the session's uid on the host too; a non-root worker runs it in a user namespace instead.
 *
 * `env` is the environment of `command` alone: `env -i` applies it as the last step, after the
 * privilege drop and inside the namespaces. Everything before runs with ROOT_ENV. Isolating,
 * `cwd` is entered by that same `env` (-C), unprivileged: nothing privileged resolves a path in it.
 */
export function confine(command: string[], cwd: string, env: Record<string, string>, confinement: Confinement): ProcessSpec {
  const chain: string[] = [];
  const limits = confinement.rlimits;
  const prlimit = [
    limits.addressSpaceBytes ? `--as=${limits.addressSpaceBytes}` : undefined,
    limits.processes ? `--nproc=${limits.processes}` : undefined,
    limits.fileSizeBytes ? `--fsize=${limits.fileSizeBytes}` : undefined,
    limits.openFiles ? `--nofile=${limits.openFiles}` : undefined,
  ].filter((a): a is string => a !== undefined);
  if (prlimit.length > 0) chain.push(confinement.tools.prlimit, ...prlimit, '--');

  let processCwd = cwd;
  if (confinement.isolate) {
    systemMountArgs ??= systemMounts();
    if (!confinement.tools.bwrap) throw new Error('bubblewrap is not installed');
    const network = confinement.network;
    // Joined as root before bubblewrap, which then keeps it (--share-net): the session's uid cannot leave it.
    if (typeof network === 'object') chain.push(confinement.tools.nsenter, `--net=${network.namespace}`, '--');
    chain.push(confinement.tools.bwrap);
    if (confinement.owner) chain.push('--unshare-ipc', '--unshare-pid', '--unshare-uts', '--unshare-cgroup-try');
    else {
      chain.push('--unshare-all', '--uid', '1000', '--gid', '1000', '--cap-drop', 'ALL');
      // --unshare-all includes the network namespace: the host's network is given back when allowed.
      if (network !== 'none') chain.push('--share-net');
    }
    if (network === 'none') chain.push('--unshare-net');
    chain.push('--die-with-parent', '--new-session', '--hostname', 'sandbox');
    chain.push(...systemMountArgs, '--proc', '/proc', '--dev', '/dev', '--perms', '1777', '--size', String(TMP_BYTES), '--tmpfs', '/tmp');
    if (network === 'host') chain.push('--ro-bind-try', '/etc/resolv.conf', '/etc/resolv.conf');
    if (typeof network === 'object' && network.resolvConf) chain.push('--ro-bind', network.resolvConf, '/etc/resolv.conf');
    for (const m of confinement.mounts) {
      // As for /etc above: parents made traversable first (else 0700, unreachable by the session's uid).
      const parents = m.inside
        .split('/')
        .slice(1, -1)
        .map((_, i, parts) => `/${parts.slice(0, i + 1).join('/')}`);
      for (const dir of parents) chain.push('--perms', '0755', '--dir', dir);
      if ('link' in m) chain.push('--symlink', m.link, m.inside);
      else chain.push(m.writable ? '--bind' : '--ro-bind', m.host, m.inside);
    }
    // The filter reaches bwrap on descriptor 3 (runProcess and the warm interpreter pass `filter`).
    if (confinement.seccomp) chain.push('--seccomp', String(SECCOMP_FD));
    // bwrap (root, and holding a descriptor of the host's /proc) enters only the sandbox's own
    // root: `cwd` may lead through links the session made (run.shell's cwd), so it is entered
    // by `env -C` below, after the drop, as the session, where no link leads out of the sandbox.
    chain.push('--chdir', '/', '--');
    if (confinement.owner) chain.push(...dropPrivileges(confinement.tools.setpriv, confinement.owner));
    processCwd = '/';
  }
  const enter = confinement.isolate ? ['-C', cwd] : [];
  chain.push(confinement.tools.env, '-i', ...enter, '--', ...Object.entries(env).map(([name, value]) => `${name}=${value}`), ...command);

  const filter = confinement.isolate ? confinement.seccomp : undefined;
  if (confinement.cgroup) {
    return {
      executable: '/bin/sh',
      args: ['-c', JOIN_CGROUPS, 'codegen-launch', ...chain],
      cwd: processCwd,
      env: { ...ROOT_ENV, CODEGEN_CGROUP_PROCS: confinement.cgroup.procsFiles.join(' ') },
      filter,
      group: confinement.cgroup,
    };
  }
  const [executable, ...args] = chain;
  if (executable === undefined) throw new Error('an empty command line'); // never: env is in it at least
  return { executable, args, cwd: processCwd, env: { ...ROOT_ENV }, filter };
}
