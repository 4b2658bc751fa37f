import { closeSync, readdirSync, readFileSync } from 'node:fs';

/** O_CLOEXEC as /proc/self/fdinfo shows it (octal flags). */
const O_CLOEXEC = 0o2000000;

/**
 * Closes the descriptors the worker inherited from whatever started it (a shell's, a
 * supervisor's): they are not close-on-exec, and libuv's spawn passes every such descriptor on,
 * through bubblewrap, to the sessions' code. Node's own descriptors are all close-on-exec, so
 * these are told apart by that flag. Returns the numbers closed.
 */
export function closeInheritedDescriptors(): number[] {
  const closed: number[] = [];
  const ipc = Number(process.env.NODE_CHANNEL_FD ?? -1); // a parent's IPC channel is Node's to keep
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd <= 2 || fd === ipc) continue;
    try {
      const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
      if (flags === undefined || (parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
      closeSync(fd);
      closed.push(fd);
    } catch {
      // gone meanwhile (the directory listing's own descriptor)
    }
  }
  return closed;
}
