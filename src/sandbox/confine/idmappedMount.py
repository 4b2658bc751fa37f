# Makes the mount at argv[1] an idmapped one (run as root by idmappedMount.ts): a clone of it,
# given the id mapping of a user namespace holding the "inside outside count" lines of argv[2:]
# (the same for uids and gids), then moved over it. Files owned on disk by an id `inside` are
# then seen, and new ones made, as `outside`; ids no line names are seen as the overflow id.
# Python's standard library only (ctypes for the mount API's system calls, which it has no
# wrapper of); prints nothing, exits non-zero with the failing step on stderr.
import ctypes
import os
import struct
import sys

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


def check(result, step):
    if result < 0:
        err = ctypes.get_errno()
        sys.stderr.write(f"{step}: {os.strerror(err)}\n")
        sys.exit(1)
    return result


def user_namespace(lines):
    """A descriptor of a new user namespace with `lines` as its uid and gid maps (a child holds it while they are written)."""
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
            sys.stderr.write("unshare(CLONE_NEWUSER) failed\n")
            sys.exit(1)
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("\n".join(lines) + "\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_w)
        os.waitpid(pid, 0)


def main():
    mount_point = sys.argv[1].encode()
    userns = user_namespace(sys.argv[2:])
    tree = check(libc.syscall(NR_OPEN_TREE, AT_FDCWD, mount_point, OPEN_TREE_CLONE | os.O_CLOEXEC), "open_tree")
    # struct mount_attr { __u64 attr_set, attr_clr, propagation, userns_fd; }
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", MOUNT_ATTR_IDMAP, 0, 0, userns), 32)
    check(libc.syscall(NR_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH, attr, 32), "mount_setattr")
    check(libc.umount2(mount_point, MNT_DETACH), "umount2")
    check(libc.syscall(NR_MOVE_MOUNT, tree, b"", AT_FDCWD, mount_point, MOVE_MOUNT_F_EMPTY_PATH), "move_mount")


main()
