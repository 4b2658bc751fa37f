# Runs pip (argv after the filter) with a seccomp filter (hex, argv[1]) installed first: the
# fetch step's no-exec rule, which bubblewrap cannot apply (it would forbid starting pip).
#
# Passed whole to `python -c` (pythonLanguage.ts reads it).

import ctypes, runpy, sys
program = ctypes.create_string_buffer(bytes.fromhex(sys.argv[1]))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(program.raw) // 8, ctypes.cast(program, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    sys.exit("pkg.install: cannot forbid exec in the fetch step (errno %d)" % ctypes.get_errno())
sys.argv = ["pip"] + sys.argv[2:]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
