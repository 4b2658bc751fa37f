# The worker's way into a session's network namespace for a port URL (one connection): started
# by the worker joined to the session's namespace, as the session's uid, it connects to
# 127.0.0.1:<port> there and copies bytes both ways between that connection and its own stdin
# and stdout. A half-close is passed on; it exits when both ways are done. It interprets nothing.
import os, socket, sys, threading

port = int(sys.argv[1])
try:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
except OSError:
    sys.exit(3)  # nothing listens there: the worker answers 502
conn.settimeout(None)

def inward():
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass

threading.Thread(target=inward, daemon=True).start()
try:
    while True:
        data = conn.recv(65536)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
except OSError:
    pass
os._exit(0)
