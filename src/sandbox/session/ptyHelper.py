# A background process's terminal (run.shell with pty): runs inside the session's sandbox, as the
# session, the command on a new pseudo-terminal it is the session leader of. What the worker writes
# to this helper's stdin goes to the terminal as typed (its end, as ^D); what the terminal shows
# comes out on stdout; lines "<rows> <cols>" on descriptor 4 resize it (the command gets SIGWINCH).
# It exits as the command does (128+N for signal N).
import fcntl, os, pty, select, struct, sys, termios

rows, cols = int(sys.argv[1]), int(sys.argv[2])
argv = sys.argv[3:]
control = 4
os.set_inheritable(control, False)

def resize(master, rows, cols):
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

pid, master = pty.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
resize(master, rows, cols)

inputs = [0, master, control]
pending = b""
while True:
    try:
        readable, _, _ = select.select(inputs, [], [])
    except InterruptedError:
        continue
    if master in readable:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""  # EIO: the terminal's last process is gone
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
    if 0 in readable:
        data = os.read(0, 65536)
        if data:
            os.write(master, data)
        else:
            os.write(master, b"\x04")  # end of input, as a terminal says it
            inputs.remove(0)
    if control in readable:
        chunk = os.read(control, 4096)
        if not chunk:
            inputs.remove(control)
            continue
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            try:
                r, c = (int(x) for x in line.split())
                if 0 < r < 10000 and 0 < c < 10000:
                    resize(master, r, c)
            except ValueError:
                pass

_, status = os.waitpid(pid, 0)
os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
