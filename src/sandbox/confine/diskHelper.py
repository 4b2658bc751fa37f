# The worker's disk helper: a root process the worker starts once (diskHelper.ts), for the
# system calls of a session fork that no tool makes without a process of its own each, and that
# Python's standard library reaches (ctypes, fcntl) where Node does not.
#
# Protocol, both ends (diskHelper.ts writes, this reads): one JSON request per line on stdin, one
# JSON reply per line on stdout, in the order asked; {"ok": true} or {"error": "<step>: <why>"}.
#
#   {"clone": {"mount": M, "image": I, "targets": [T, ...]}}
#       syncfs of the filesystem mounted at M (all it was given is on its image I), then each T
#       made (it must not exist) as a reflink of I: made under I's lock, so each is I at one
#       instant.
#   {"idmap": {"mount": M, "lines": ["inside outside count", ...]}}
#       the mount at M made an idmapped one: a user namespace with those lines as its uid and gid
#       maps (a child holds it while they are written), a clone of the mount given its mapping,
#       moved over M. Files owned on disk by `inside` are then seen, and new ones made, as
#       `outside`; ids no line names are seen as the overflow id.
#
# It never follows what a session made: its paths are the worker's (session directories, the
# mount points of their disks), and the files it opens are disk images, which sessions never see.
import ctypes
import fcntl
import json
import os
import struct
import sys

FICLONE = 0x40049409
# The mount API's system call numbers: the same on every architecture (added after the tables were unified).
NR_OPEN_TREE, NR_MOVE_MOUNT, NR_MOUNT_SETATTR = 428, 429, 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
CLONE_NEWUSER = 0x10000000
MNT_DETACH = 2

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class Failed(Exception):
    pass


def check(result, step):
    if result < 0:
        raise Failed(f"{step}: {os.strerror(ctypes.get_errno())}")
    return result


def clone(mount, image, targets):
    fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        check(libc.syncfs(fd), "syncfs")
    finally:
        os.close(fd)
    source = os.open(image, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        for target in targets:
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.ioctl(out, FICLONE, source)
            except OSError as err:
                os.unlink(target)
                raise Failed(f"reflink to {target}: {err.strerror}")
            finally:
                os.close(out)
    finally:
        os.close(source)


def user_namespace(lines):
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(done_w)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os._exit(1)
        os.write(ready_w, b"x")
        os.read(done_r, 1)
        os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"x":
            raise Failed("unshare(CLONE_NEWUSER) failed")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("\n".join(lines) + "\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


def idmap(mount, lines):
    point = mount.encode()
    userns = user_namespace(lines)
    try:
        tree = check(libc.syscall(NR_OPEN_TREE, AT_FDCWD, point, OPEN_TREE_CLONE | os.O_CLOEXEC), "open_tree")
        try:
            # struct mount_attr { __u64 attr_set, attr_clr, propagation, userns_fd; }
            attr = ctypes.create_string_buffer(struct.pack("QQQQ", MOUNT_ATTR_IDMAP, 0, 0, userns), 32)
            check(libc.syscall(NR_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, attr, 32), "mount_setattr")
            check(libc.umount2(point, MNT_DETACH), "umount2")
            check(libc.syscall(NR_MOVE_MOUNT, tree, b"", AT_FDCWD, point, MOVE_MOUNT_F_EMPTY_PATH), "move_mount")
        finally:
            os.close(tree)
    finally:
        os.close(userns)


def answer(request):
    if "clone" in request:
        r = request["clone"]
        clone(r["mount"], r["image"], r["targets"])
    elif "idmap" in request:
        r = request["idmap"]
        idmap(r["mount"], r["lines"])
    else:
        raise Failed("unknown request")


for line in sys.stdin:
    try:
        answer(json.loads(line))
        reply = {"ok": True}
    except (Failed, OSError, KeyError, TypeError, ValueError) as err:
        reply = {"error": str(err)}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
