# The warm interpreter kept in each session's sandbox. It never runs user code itself: per call
# it forks a child, which connects its stdout and stderr to the worker's socket, waits until the
# worker has put it in the task's cgroup, and runs the code as `python -` would, so every call
# starts from the same clean state without paying for an interpreter start.
#
# Protocol, JSON lines: worker -> zygote on stdin: {op:"run",id,token,code} |
# {op:"run",id,token,exec:{argv,cwd,env,stdin?}} (the child execs a program instead, `stdin` its
# standard input from a memory file) | {op:"go",id} |
# {op:"kill",id}; zygote -> worker on stdout: {ev:"ready"} | {ev:"forked",id,pid} |
# {ev:"went",id} (the child's gate is open: the zygote took the go) |
# {ev:"exit",id,code,signal,connected} (connected: the child had connected its streams, so
# the worker waits for them) | {ev:"refused",id} (no child could be forked for the call: the
# session is at its process limit; the zygote itself carries on).
#
# Started by the worker as `python -u -c <this file> <socket>` (pythonLanguage.ts; zygote.ts reads
# it): the whole file is the program, these comments included.

import sys
# The zygote's own imports come from the standard library, never the workspace (its files would
# shadow json or socket and stop the zygote); each call gets the workspace back first on its path.
WORKSPACE_FIRST = sys.path[:1] == [""]
if WORKSPACE_FIRST:
    del sys.path[0]
AT_START = set(sys.modules)  # what python - has loaded before the code runs
import atexit, builtins, ctypes, json, os, selectors, signal, socket, threading, time, types
# Not used here: loaded so every call starts with it (and linecache, tokenize) imported.
__import__("traceback")
# compile() sets up the ast module's types on its first use (milliseconds): done once here, not
# in every call's child.
compile("", "<warm>", "exec")

SOCKET = sys.argv[1]
ctl_in, ctl_out = os.dup(0), os.dup(1)
libc = ctypes.CDLL(None)
own_name = ctypes.create_string_buffer(16)
try:
    libc.prctl(16, own_name, 0, 0, 0)  # PR_GET_NAME
except Exception:
    pass
devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(devnull, 0)
os.close(devnull)
try:
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back to us
except Exception:
    pass
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGCHLD, lambda *_: None)
children = {}   # pid -> id
gates = {}      # id -> write end of the child's go pipe
pids = {}       # id -> pid
connected = {}  # pid -> read end of the pipe the child writes to once its streams are connected

def send(message):
    os.write(ctl_out, (json.dumps(message) + "\n").encode())

def connect(token, stream):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(SOCKET)
    s.sendall(("%s %s\n" % (token, stream)).encode())
    return s

def rename(name):
    # Only a process's name (comm): a child forked ahead, waiting for its call, is told apart from a call's processes.
    try:
        libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass

def read_request(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    if not chunks:
        os._exit(1)  # the zygote went away before giving this child a call
    return json.loads(b"".join(chunks))

def child(requests, gate, told):
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Nothing of the zygote's or of other calls' plumbing stays open here: a call's code
        # must not open another call's gate or read its streams' state.
        for fd in [ctl_in, ctl_out, wake_r, wake_w, selector.fileno()] + list(gates.values()) + list(connected.values()) + ahead_fds():
            os.close(fd)
        rename(b"codegen-ahead")
        request = read_request(requests)
        rename(own_name.value)
        # The streams connect while the worker places this child in the task's cgroup; no code
        # of the call runs before the gate opens.
        out, err = connect(request["token"], "stdout"), connect(request["token"], "stderr")
        os.write(told, b"c")
        os.close(told)
        if os.read(gate, 1) != b"g":
            os._exit(1)
        os.close(gate)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        out.close()
        err.close()
        program = request.get("exec")
        if program is not None:
            try:
                # Python ignores these; SIG_IGN would outlive execve (a pipeline's writer would spin on EPIPE).
                for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
                    if hasattr(signal, name):
                        signal.signal(getattr(signal, name), signal.SIG_DFL)
                os.chdir(program["cwd"])
                if program.get("stdin") is not None:
                    data = os.memfd_create("stdin", 0)
                    view = memoryview(program["stdin"].encode())
                    while view:
                        view = view[os.write(data, view):]
                    os.lseek(data, 0, os.SEEK_SET)
                    os.dup2(data, 0)
                    os.close(data)
                os.execve(program["argv"][0], program["argv"], program["env"])
            except OSError as e:
                os.write(2, ("%s: %s\n" % (program["argv"][0], e.strerror)).encode())
                code = 127
                return
        sys.argv = ["-"]
        if WORKSPACE_FIRST:
            sys.path.insert(0, "")
            # A workspace module named like one the zygote loaded wins, as it would in python -.
            for name in shadowed_modules():
                for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                    del sys.modules[loaded]
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        sys.modules["__main__"] = main
        try:
            exec(compile(request["code"], "<stdin>", "exec"), main.__dict__)
            code = 0
        except SystemExit as e:
            if e.code is None:
                code = 0
            elif isinstance(e.code, int):
                code = e.code & 0xFF
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            etype, value, tb = sys.exc_info()
            value.__traceback__ = tb.tb_next  # as python - would show it: without this frame
            sys.excepthook(etype, value, value.__traceback__)
            code = 1
        try:
            threading._shutdown()  # join non-daemon threads, as interpreter exit does
        except Exception:
            pass
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)

# What the zygote loaded beyond python -'s own start: the names a workspace module could shadow.
LOADED = [n for n in sys.modules if n not in AT_START and "." not in n]
# A workspace directory this large (bytes of entries) is not listed: each name is looked up.
LIST_AT_MOST = 32 * 1024

def shadowed_modules():
    """The loaded modules a file or package in the workspace (the cwd) is named like."""
    try:
        if os.stat(".").st_size > LIST_AT_MOST:
            raise OSError
        entries = set(os.listdir("."))
    except OSError:
        entries = None
    shadowed = []
    for name in LOADED:
        # One listing instead of two lookups per name (dozens of names); a name listed is looked up.
        if entries is not None and name + ".py" not in entries and name not in entries:
            continue
        if os.path.isfile(name + ".py") or os.path.isfile(os.path.join(name, "__init__.py")):
            shadowed.append(name)
    return shadowed

# One child is forked ahead of its call, waiting for the call on a pipe: forking (and the child's
# first page faults) then happen between calls, not during one. The next one is forked when a
# call's child exits, or AHEAD_AFTER_S after its go if it still runs (a long call, and others
# may come meanwhile).
ahead = None  # (pid, requests write end, gate write end, told read end)
AHEAD_AFTER_S = 0.05
ahead_due = None  # when the next child is forked ahead if no exit comes first (time.monotonic())

def ahead_fds():
    return list(ahead[1:]) if ahead else []

def fork_child():
    requests_r, requests_w = os.pipe()
    gate_r, gate_w = os.pipe()
    told_r, told_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (requests_r, requests_w, gate_r, gate_w, told_r, told_w):
            os.close(fd)
        raise
    if pid == 0:
        for fd in (requests_w, gate_w, told_r):
            os.close(fd)
        child(requests_r, gate_r, told_w)
    for fd in (requests_r, gate_r, told_w):
        os.close(fd)
    os.set_blocking(told_r, False)
    return (pid, requests_w, gate_w, told_r)

def ensure_ahead():
    global ahead
    if ahead is None:
        try:
            ahead = fork_child()
        except OSError:
            return  # the session is at its process limit: the next call forks its own
        # The worker places it in a task group now, not when its call comes.
        send({"ev": "ahead", "pid": ahead[0]})

def take_child():
    global ahead
    taken, ahead = ahead, None
    return taken or fork_child()

def give(requests_w, request):
    view = memoryview(json.dumps(request).encode())
    try:
        while view:
            view = view[os.write(requests_w, view):]
    except OSError:
        pass  # the child is gone (its code's own doing): its exit is reported as usual
    os.close(requests_w)

def handle(request):
    global ahead_due
    op = request["op"]
    if op == "run":
        try:
            pid, requests_w, gate_w, told_r = take_child()
        except OSError:
            # Refused a process (the session's limit, its own doing): this call's outcome, not the zygote's end.
            send({"ev": "refused", "id": request["id"]})
            return
        connected[pid] = told_r
        children[pid] = request["id"]
        gates[request["id"]] = gate_w
        pids[request["id"]] = pid
        give(requests_w, request)
        send({"ev": "forked", "id": request["id"], "pid": pid})
    elif op == "go":
        gate = gates.pop(request["id"], None)
        if gate is not None:
            try:
                os.write(gate, b"g")
            except OSError:
                # The child is dead, not yet reaped: a call cancelled just after its child was
                # placed sends kill, then go (read together here), or the session's code killed
                # it. EPIPE must not end the zygote (and every call it runs); the exit is reported.
                pass
            os.close(gate)
            send({"ev": "went", "id": request["id"]})
        if ahead is None and ahead_due is None:
            ahead_due = time.monotonic() + AHEAD_AFTER_S
    elif op == "kill":
        pid = pids.get(request["id"])
        if pid is not None:
            # The child itself too: it may not have called setsid() yet (no group to kill). Not
            # reaped yet, its pid is still its own.
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass

def reap():
    global ahead, ahead_due
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if ahead and pid == ahead[0]:
            for fd in ahead[1:]:
                os.close(fd)
            ahead = None  # killed while waiting (by the session's own code): forked again later
            continue
        task = children.pop(pid, None)
        if task is None:
            continue  # an orphan of some task, re-parented here
        told = connected.pop(pid)
        try:
            streams = os.read(told, 1) == b"c"
        except BlockingIOError:
            streams = False
        os.close(told)
        gate = gates.pop(task, None)
        if gate is not None:
            os.close(gate)
        pids.pop(task, None)
        if os.WIFSIGNALED(status):
            send({"ev": "exit", "id": task, "code": None, "signal": os.WTERMSIG(status), "connected": streams})
        else:
            send({"ev": "exit", "id": task, "code": os.WEXITSTATUS(status), "signal": None, "connected": streams})
        # The next call's child is forked once this call is over, not while it runs: the fork,
        # and the worker moving the new child into a task group, would compete with it.
        ensure_ahead()
        if ahead is not None:
            ahead_due = None

selector = selectors.DefaultSelector()
selector.register(ctl_in, selectors.EVENT_READ, "ctl")
selector.register(wake_r, selectors.EVENT_READ, "wake")
buffered = b""
ensure_ahead()
send({"ev": "ready"})
while True:
    if ahead_due is not None and time.monotonic() >= ahead_due:
        ahead_due = None
        ensure_ahead()
    for key, _ in selector.select(None if ahead_due is None else max(0, ahead_due - time.monotonic())):
        if key.data == "wake":
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            reap()
            continue
        chunk = os.read(ctl_in, 1 << 20)
        if not chunk:
            for pid in list(children) + ([ahead[0]] if ahead else []):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(0)
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            handle(json.loads(line))
    reap()
