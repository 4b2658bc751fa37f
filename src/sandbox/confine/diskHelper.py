# The worker's disk helper: a root process the worker starts once (diskHelper.ts), for the
# system calls of a session fork that no tool makes without a process of its own each, and that
# Python's standard library reaches (ctypes, fcntl) where Node does not.
#
# Protocol, both ends (diskHelper.ts writes, this reads): one JSON request per line on stdin, one
# JSON reply per line on stdout, in the order asked; {"ok": true} (with what the request says it
# gives) or {"error": "<step>: <why>"}.
#
#   {"clone": {"mount": M, "image": I, "targets": [T, ...]}} -> {"ok": true, "paused_ms": P}
#       syncfs of the ext4 filesystem mounted at M (all it was given is on its image I), its
#       journal checkpointed (writers wait for that: P ms), then each T made (it must not exist)
#       as a reflink of I: made under I's lock, so each is I at one instant.
#   {"copy": {"from": T, "to": F}}
#       F made (it must not exist; mode 0600) a sparse copy of T (a formatted template): its data
#       copied in the kernel, its holes left holes.
#   {"mount": {"image": I, "point": M}}
#       the ext4 image I attached to a free loop device (released when the mount goes) and mounted
#       on the directory M, nosuid and nodev: what mount -o loop does, without its process. A loop
#       device still holding I (its filesystem lazily unmounted, alive elsewhere) is mounted instead.
#   {"idmap": {"mount": M, "lines": ["inside outside count", ...]}}
#       the mount at M made an idmapped one: a user namespace with those lines as its uid and gid
#       maps (a child holds it while they are written), a clone of the mount given its mapping,
#       moved over M. Files owned on disk by `inside` are then seen, and new ones made, as
#       `outside`; ids no line names are seen as the overflow id.
#
# It never follows what a session made: its paths are the worker's (session directories, the
# mount points of their disks), and the files it opens are disk images, which sessions never see.
import ctypes
import errno
import fcntl
import json
import os
import struct
import sys
import time

FICLONE = 0x40049409
EXT4_IOC_CHECKPOINT = 0x4004662B
# The mount API's system call numbers: the same on every architecture (added after the tables were unified).
NR_OPEN_TREE, NR_MOVE_MOUNT, NR_MOUNT_SETATTR = 428, 429, 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000
CLONE_NEWUSER = 0x10000000
MNT_DETACH = 2
MS_NOSUID, MS_NODEV = 2, 4
LOOP_CTL_GET_FREE, LOOP_CONFIGURE, LOOP_SET_FD, LOOP_CLR_FD, LOOP_SET_STATUS64, LOOP_GET_STATUS64 = 0x4C82, 0x4C0A, 0x4C00, 0x4C01, 0x4C04, 0x4C05
LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR = 1, 4

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class Failed(Exception):
    pass


def check(result, step):
    if result < 0:
        raise Failed(f"{step}: {os.strerror(ctypes.get_errno())}")
    return result


def checkpoint_journal(fd):
    """The journal's transactions written to their places, so a copy's mount has none to replay
    (replaying a full journal into a reflinked image took a 1 GB fork's mount from 5 to 40 ms).
    Writers wait for it; the milliseconds they waited. Nothing on a kernel before 5.13."""
    start = time.monotonic()
    try:
        fcntl.ioctl(fd, EXT4_IOC_CHECKPOINT, struct.pack("I", 0))
    except OSError as err:
        if err.errno not in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            raise Failed(f"journal checkpoint: {err.strerror}")
    return (time.monotonic() - start) * 1000


def clone(mount, image, targets):
    fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Synced first: the checkpoint commits what is left, and writers wait while it does.
        check(libc.syncfs(fd), "syncfs")
        paused_ms = checkpoint_journal(fd)
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
    return {"paused_ms": round(paused_ms, 1)}


def copy_sparse(template, target):
    source = os.open(template, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            size = os.fstat(source).st_size
            os.ftruncate(out, size)
            offset = 0
            while offset < size:
                try:
                    offset = os.lseek(source, offset, os.SEEK_DATA)
                except OSError as err:
                    if err.errno == errno.ENXIO:  # no data past offset
                        break
                    raise
                end = os.lseek(source, offset, os.SEEK_HOLE)
                while offset < end:
                    copied = os.copy_file_range(source, out, end - offset, offset, offset)
                    if copied == 0:
                        raise Failed(f"copy of {template}: it shrank")
                    offset += copied
        except BaseException:
            os.unlink(target)
            raise
        finally:
            os.close(out)
    finally:
        os.close(source)


def loop_info(image):
    # struct loop_info64: 5 u64 (device, inode, rdevice, offset, sizelimit), 4 u32 (number,
    # encrypt type, key size, flags), file name[64], crypt name[64], key[32], init[2] (u64).
    name = os.fsencode(image)[-63:]
    return struct.pack("5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, LO_FLAGS_AUTOCLEAR, name, b"", b"", 0, 0)


def kernel_dev(dev):
    """A device number as loop_info64 gives it (the kernel's new_encode_dev)."""
    major, minor = os.major(dev), os.minor(dev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def bound_loops():
    """The loop devices bound to a file: /proc/partitions lists those (an unbound one has no size),
    in one read where a walk of /sys/block took milliseconds on a host with hundreds of them."""
    try:
        with open("/proc/partitions") as f:
            rows = [line.split() for line in f.read().splitlines()[2:]]
        return [row[3] for row in rows if len(row) == 4 and row[3].startswith("loop") and row[3][4:].isdigit() and row[2] != "0"]
    except OSError:
        return [name for name in os.listdir("/sys/block") if name.startswith("loop") and os.path.exists(f"/sys/block/{name}/loop/backing_file")]


def held_loop(image):
    """The loop device that still holds `image` (its path and a descriptor), or None. A disk
    unmounted lazily lives on while a mount namespace holds a copy of its mount (a sandbox's,
    torn down late); a second loop device would mount a second ext4 instance of the image beside
    it, both writing their journal and superblock to it. Mounting this one shares the live
    filesystem, as mount -o loop does. Held open, it stays bound to the image until mounted.
    Known by the file's device and inode alone: the path a loop device shows is the one it was
    opened by, another for a data directory reached through a bind mount or mounted again."""
    st = os.stat(image)
    for name in bound_loops():
        device = f"/dev/{name}"
        try:
            # Read-only: a device closed after being opened for writing is probed again by udev.
            loop = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            # Checked on the open device: it may have been bound to another file since it was listed.
            info = fcntl.ioctl(loop, LOOP_GET_STATUS64, loop_info(""))
            dev, ino, _, offset, size_limit, _, _, _, flags = struct.unpack_from("5Q4I", info)
            if (dev, ino, offset, size_limit) == (kernel_dev(st.st_dev), st.st_ino, 0, 0) and not flags & LO_FLAGS_READ_ONLY:
                return device, loop
        except OSError:  # unbound meanwhile
            pass
        os.close(loop)
    return None


def attach_loop(image):
    """A loop device holding `image` (its path and a descriptor): a free one taken, again if another took it first."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(64):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                loop = os.open(device, os.O_RDWR | os.O_CLOEXEC)
                try:
                    # struct loop_config: u32 fd, u32 block size, loop_info64, 8 u64 reserved.
                    config = struct.pack("II", backing, 0) + loop_info(image) + bytes(64)
                    try:
                        fcntl.ioctl(loop, LOOP_CONFIGURE, config)
                    except OSError as err:
                        if err.errno == errno.EBUSY:
                            os.close(loop)
                            continue
                        if err.errno not in (errno.EINVAL, errno.ENOTTY):
                            raise
                        # Before Linux 5.8: set the file, then the flags.
                        fcntl.ioctl(loop, LOOP_SET_FD, backing)
                        try:
                            fcntl.ioctl(loop, LOOP_SET_STATUS64, loop_info(image))
                        except OSError:
                            fcntl.ioctl(loop, LOOP_CLR_FD, 0)
                            raise
                    return device, loop
                except BaseException:
                    os.close(loop)
                    raise
            raise Failed("loop device: every free one was taken by another")
        finally:
            os.close(control)
    finally:
        os.close(backing)


def mount(image, point):
    try:
        device, loop = held_loop(image) or attach_loop(image)
    except OSError as err:
        raise Failed(f"loop device for {image}: {err.strerror}")
    try:
        # The mount holds the device from here; the descriptor closed, it goes with the mount
        # (autoclear), or at once if the mount failed.
        check(libc.mount(device.encode(), point.encode(), b"ext4", MS_NOSUID | MS_NODEV, None), f"mount {image} as ext4")
    finally:
        os.close(loop)


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
        return clone(r["mount"], r["image"], r["targets"])
    elif "copy" in request:
        r = request["copy"]
        copy_sparse(r["from"], r["to"])
    elif "mount" in request:
        r = request["mount"]
        mount(r["image"], r["point"])
    elif "idmap" in request:
        r = request["idmap"]
        idmap(r["mount"], r["lines"])
    else:
        raise Failed("unknown request")
    return {}


for line in sys.stdin:
    try:
        reply = {"ok": True, **answer(json.loads(line))}
    except (Failed, OSError, KeyError, TypeError, ValueError) as err:
        reply = {"error": str(err)}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
