import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Status } from 'nice-grpc';
import { callTool } from '../helpers/tasks.js';
import { startWorker, stopHard, type RunningWorker } from '../helpers/worker.js';

// The kernel keeps per-uid state that outlives every process and directory of a session: the
// user keyring (@u). A session that could add_key there left a key the next session given the
// same uid read. Sandboxed processes now run under a seccomp filter refusing the keyring calls
// (and bpf, userfaultfd, io_uring, perf events, new namespaces), and uids are handed out round
// the worker's range, so a destroyed session's uid is not the next one's.

let worker: RunningWorker;
before(async () => {
  worker = await startWorker({ env: { WORKER_SPARE_SESSIONS: '0' } });
});
after(async () => {
  await stopHard(worker, 3_000);
});

const KEYS = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
USER_KEYRING = -4
def put(data):
    kid = libc.syscall(248, b"user", b"left-behind", data, len(data), USER_KEYRING)  # add_key
    print("uid", os.getuid(), "add_key", kid if kid >= 0 else os.strerror(ctypes.get_errno()))
def get():
    kid = libc.syscall(250, 10, USER_KEYRING, b"user", b"left-behind", 0)  # keyctl(KEYCTL_SEARCH)
    if kid < 0:
        print("uid", os.getuid(), "nothing:", os.strerror(ctypes.get_errno()))
        return
    buf = ctypes.create_string_buffer(256)
    n = libc.syscall(250, 11, kid, buf, 256)  # keyctl(KEYCTL_READ)
    print("uid", os.getuid(), "found:", buf.raw[:n].decode())
def clear():
    libc.syscall(250, 7, USER_KEYRING)  # keyctl(KEYCTL_CLEAR): leave nothing for the next holder of this uid
`;

// Each refused call prints its errno name; one that works prints ALLOWED.
const FORBIDDEN = String.raw`
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def probe(name, nr, *args):
    r = libc.syscall(nr, *args)
    e = ctypes.get_errno()
    print(name, "ALLOWED" if r >= 0 else errno.errorcode.get(e, e))
probe("bpf", 321, 0, None, 0)
probe("userfaultfd", 323, 0)
probe("io_uring_setup", 425, 1, ctypes.create_string_buffer(120))
probe("perf_event_open", 298, ctypes.create_string_buffer(128), 0, -1, -1, 0)
probe("unshare_user", 272, 0x10000000)
probe("keyctl", 250, 0, -4, 0)
`;

test("a session can neither leave a key in its uid's keyring nor meet its predecessor's uid", async (t) => {
  const a = (await worker.sessions.createSession({ workspaceId: 'a', userId: 'alice' }, { deadline: 10_000 })).sessionId;
  const put = await callTool(worker.tasks, a, 'run.python', { code: `${KEYS}\nput(b"alice's API token 4f9c")` }, 30_000);
  const putOut = put.result?.outputs.stdout?.trim() ?? put.details;
  t.diagnostic(`session A: ${putOut}`);
  assert.match(putOut, /add_key Operation not permitted/, 'add_key is refused');
  await worker.sessions.destroySession({ sessionId: a }, { deadline: 15_000 });

  const b = (await worker.sessions.createSession({ workspaceId: 'b', userId: 'mallory' }, { deadline: 10_000 })).sessionId;
  const got = await callTool(worker.tasks, b, 'run.python', { code: `${KEYS}\nget()\nclear()` }, 30_000);
  const out = got.result?.outputs.stdout?.trim() ?? got.details;
  t.diagnostic(`session B (after A was destroyed): ${out}`);
  assert.equal(got.code, Status.OK);
  assert.doesNotMatch(out, /found:/, `session B read session A's key: ${out}`);
  assert.notEqual(/^uid (\d+)/.exec(out)?.[1], /^uid (\d+)/.exec(putOut)?.[1], 'the next session does not get the uid just given back');
});

test('the kernel calls a session has no use for are refused (seccomp)', async () => {
  const sessionId = (await worker.sessions.createSession({ workspaceId: 'probe' }, { deadline: 10_000 })).sessionId;
  const probed = await callTool(worker.tasks, sessionId, 'run.python', { code: FORBIDDEN }, 30_000);
  const out = probed.result?.outputs.stdout ?? probed.details;
  for (const call of ['bpf', 'userfaultfd', 'io_uring_setup', 'perf_event_open', 'unshare_user', 'keyctl'])
    assert.match(out, new RegExp(`^${call} EPERM$`, 'm'), out);
  // Ordinary work still runs: threads, processes, pipes.
  const ordinary = await callTool(
    worker.tasks,
    sessionId,
    'run.python',
    {
      code: 'import subprocess, threading\nt = threading.Thread(target=print, args=("thread",)); t.start(); t.join()\nprint(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip())',
    },
    30_000,
  );
  assert.equal(ordinary.result?.outputs.stdout, 'thread\nchild\n', ordinary.details);
});
