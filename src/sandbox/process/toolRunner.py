# The worker's tool runner: a small process the worker starts once (toolRunner.ts) that runs its
# host tools (ip, nft, umount, chown...) for it. A process started by the worker itself is a fork
# of the whole worker (libuv forks, then execs): its page tables copied while the worker's event
# loop waits, 8 ms at 100 MB of heap, for every tool. Forked from here, a tool costs the worker
# a line on a pipe.
#
# Protocol, both ends (toolRunner.ts writes, this reads): one JSON request per line on stdin,
#   {"id": N, "argv": [command, arg, ...], "input": "text for its stdin", "timeout_ms": T}
# and, once that tool has ended, one JSON reply per line on stdout, in the order tools end:
#   {"id": N, "code": C, "signal": null or "SIGKILL", "stdout": "...", "stderr": "..."}
#   {"id": N, "error": "<why it could not be started>"}
# Each tool runs with exactly the environment given as the runner's one argument (JSON: the
# worker's ROOT_ENV; not the runner's own, which Python changes: LC_CTYPE coerced to C.UTF-8),
# in a thread of its own, so a slow tool (chown -R of a large tree) holds up no other. A tool
# still running at its timeout is killed (SIGKILL). Output is text: bytes that are not UTF-8
# become U+FFFD, as Node's Buffer.toString() makes them.
import json
import os
import signal
import subprocess
import sys
import threading

lock = threading.Lock()
tool_env = json.loads(sys.argv[1])


def reply(body):
    line = json.dumps(body) + "\n"
    with lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def run(request):
    ident = request.get("id")
    try:
        argv = request["argv"]
        timeout = request.get("timeout_ms", 60000) / 1000
        child = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True, env=tool_env
        )
    except (OSError, KeyError, TypeError, ValueError) as err:
        reply({"id": ident, "error": getattr(err, "strerror", None) or str(err)})
        return
    try:
        out, err = child.communicate(request.get("input", "").encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    code = child.returncode
    reply(
        {
            "id": ident,
            "code": code if code >= 0 else None,
            "signal": signal.Signals(-code).name if code < 0 else None,
            "stdout": out.decode("utf-8", "replace"),
            "stderr": err.decode("utf-8", "replace"),
        }
    )


def main():
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except ValueError as err:
            reply({"id": None, "error": f"not JSON: {err}"})
            continue
        threading.Thread(target=run, args=(request,), daemon=True).start()
    # stdin closed: the worker is gone or done; tools still running end on their own.
    os._exit(0)


main()
