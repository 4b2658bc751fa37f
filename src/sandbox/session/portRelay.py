# The worker's way into a session's network namespace for port URLs: one per session, started by
# the worker joined to the session's namespace, as the session's uid, in its cgroup. It listens on
# a Unix socket (argv[1]) the worker connects to; each connection first says "<port>\n", and the
# relay connects to 127.0.0.1:<port> in the namespace and copies bytes both ways, passing each
# half-close on. Nothing listening there: the connection is closed. It interprets nothing else.
import socket, sys, threading, time

# Connections at once (two threads each, in the session's cgroup: anyone holding a port URL can
# open them, and they count against the session's process limit). Past it, new ones are closed.
MAX_CONNECTIONS = 32
slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def serve(conn):
    target = None
    try:
        head = b""
        while b"\n" not in head:
            data = conn.recv(8)
            if not data or len(head) > 8:
                return
            head += data
        line, rest = head.split(b"\n", 1)
        target = socket.create_connection(("127.0.0.1", int(line)), timeout=10)
        target.settimeout(None)
        if rest:
            target.sendall(rest)
        inward = threading.Thread(target=pipe, args=(conn, target), daemon=True)
        inward.start()
        pipe(target, conn)
        inward.join()
    except (OSError, ValueError, RuntimeError):
        pass
    finally:
        for s in (conn, target):
            if s is not None:
                s.close()
        slots.release()

server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(128)
print("ready", flush=True)
while True:
    try:
        conn, _ = server.accept()
    except OSError:  # out of descriptors: the session's own doing; try again shortly
        time.sleep(0.05)
        continue
    if not slots.acquire(blocking=False):
        conn.close()
        continue
    try:
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    except RuntimeError:  # no thread to be had (the session at its process limit): this one is refused
        conn.close()
        slots.release()
