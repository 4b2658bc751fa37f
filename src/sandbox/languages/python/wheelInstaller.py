# Installs wheels the worker already has (wheelStore.ts) into a session's environment, as the
# session, with PyPA's installer (Debian's python3-installer: pure Python, what distributions lay
# wheels out with), imported from its package directory under /usr (read-only in every sandbox):
# no pip to import or start, no resolution, no index. installer writes the files, the scripts
# with their #! line fixed, the entry points' launchers, INSTALLER, REQUESTED and RECORD; this
# driver checks every wheel before anything is written, finishes as pip does (bytecode compiled
# and listed in RECORD without a hash, RECORD sorted) and prints pip's two lines, so progress and
# outputs read the same.
#
# argv: installer's package directory, site-packages, bin/, the canonical names of the projects
# asked for (comma-separated), then the wheels' paths (no json: one module fewer to import). Run
# by the environment's `python -I -S` (nothing of the environment's own, no .pth file, runs
# first) in a sandbox showing the environment writable and the wheels read-only: the session's
# code runs with the environment read-only, so no warm fork can do it. Exit code 3 means "not for
# this path" (installer missing, a .data directory other than purelib/platlib/scripts, a file
# there already or written twice, an odd name): nothing was written and pip does the install.
#
# Passed whole to `python -I -S -c` (pythonLanguage.ts; wheelInstaller.ts reads it).

import importlib.util, os, re, sys, types, warnings

installer_path, site, scripts, requested_names, *wheels = sys.argv[1:]
UNSUPPORTED = 3


class LazyStdlib:
    """Standard modules installer's imports pull in that laying out a wheel here never or rarely
    runs (compileall: bytecode is compiled below; shlex: #! lines with spaces; email.utils' socket,
    datetime, random, calendar: dates and addresses; zipfile's bz2, lzma; py_compile's traceback):
    each loads on first use instead (importlib's LazyLoader). installer's imports made this step
    take ~25 ms more CPU than the stdlib-only installer it replaced; these take ~17 ms off."""

    NAMES = {"bz2", "calendar", "compileall", "datetime", "ipaddress", "lzma", "random", "shlex", "shutil", "socket", "tempfile", "traceback"}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in cls.NAMES:
            return None
        sys.meta_path.remove(cls)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, cls)
        if spec is not None:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def windows_launcher(package, resource):
    raise NotImplementedError("Windows launchers are not laid out here")


sys.meta_path.insert(0, LazyStdlib)
import py_compile, zipfile  # noqa: E402 (after LazyStdlib: they import some of its modules)

try:
    # installer.scripts reads Windows launchers with it (script_kind "posix" never does): its import
    # (a dozen modules) is not made.
    sys.modules["importlib.resources"] = types.ModuleType("importlib.resources")
    sys.modules["importlib.resources"].read_binary = windows_launcher
    # installer's package alone (by its path, not its directory on sys.path: nothing else there is imported).
    spec = importlib.util.spec_from_file_location("installer", os.path.join(installer_path, "__init__.py"), submodule_search_locations=[installer_path])
    sys.modules["installer"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["installer"])
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.records import RecordEntry, parse_record_file
    from installer.sources import WheelFile
    from installer.utils import canonicalize_name, parse_entrypoints, parse_metadata_file
except Exception:
    sys.exit(UNSUPPORTED)

SCHEMES = {"purelib": site, "platlib": site, "scripts": scripts}


class PipLayout(SchemeDictionaryDestination):
    """installer's destination, finished as pip finishes: every .py file installed from the wheel
    (not a launcher) compiled, its bytecode in RECORD without a hash, RECORD's rows sorted."""

    def __init__(self):
        super().__init__(SCHEMES, interpreter=os.path.join(scripts, "python"), script_kind="posix")
        self.launchers = set()

    def write_script(self, name, module, attr, section):
        entry = super().write_script(name, module, attr, section)
        self.launchers.add(entry.path)
        return entry

    def finalize_installation(self, scheme, record_file_path, records):
        root = self.scheme_dict[scheme]
        # A scheme at the root's directory is the root (installer would write "./name" for it).
        rows = [(scheme if self.scheme_dict[s] == root else s, r) for s, r in records]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a SyntaxWarning is pip's to hide as well
            for s, r in list(rows):
                if r.path.endswith(".py") and not (s == "scripts" and r.path in self.launchers):
                    source = os.path.join(self.scheme_dict[s], r.path)
                    try:
                        py_compile.compile(source, doraise=True)
                    except (py_compile.PyCompileError, SyntaxError, UnicodeError, OSError):
                        continue
                    compiled = os.path.relpath(importlib.util.cache_from_source(source), self.scheme_dict[s])
                    rows.append((s, RecordEntry(compiled, None, None)))

        def shown(row):
            s, r = row
            return r.path if s == scheme else os.path.relpath(self.scheme_dict[s], root) + "/" + r.path

        super().finalize_installation(scheme, record_file_path, sorted(rows, key=shown))


def plan(path):
    """The open wheel, its project's name and version, and every path installing it writes;
    exits UNSUPPORTED for anything pip is to decide."""
    archive = zipfile.ZipFile(path)
    source = WheelFile(archive)
    info, data = source.dist_info_dir, source.data_dir
    name, version = info[: -len(".dist-info")].rsplit("-", 1)
    # The distribution inside must be the one the file name says (what the worker checked and reports).
    if canonicalize_name(name) != canonicalize_name(source.distribution) or version != source.version:
        sys.exit(UNSUPPORTED)
    if not (parse_metadata_file(source.read_dist_info("WHEEL"))["Wheel-Version"] or "").startswith("1."):
        sys.exit(UNSUPPORTED)
    recorded = {RecordEntry.from_elements(*row).path for row in parse_record_file(source.read_dist_info("RECORD").splitlines())}
    targets = []
    for entry in archive.namelist():
        parts = entry.split("/")
        top = parts[0]
        if entry.startswith("/") or "\\" in entry or ".." in parts or "" in parts[:-1]:
            sys.exit(UNSUPPORTED)
        # installer tells .data and .dist-info by prefix: a look-alike directory is pip's to judge.
        if top.endswith((".data", ".dist-info")) or top.startswith((data, info)):
            if top not in (data, info):
                sys.exit(UNSUPPORTED)
        if entry.endswith("/"):
            continue
        if entry not in recorded:
            sys.exit(UNSUPPORTED)
        if top == data:
            if len(parts) < 3 or parts[1] not in SCHEMES or (parts[1] == "scripts" and len(parts) > 3):
                sys.exit(UNSUPPORTED)
            targets.append(os.path.join(SCHEMES[parts[1]], *parts[2:]))
        elif entry != info + "/RECORD":
            targets.append(os.path.join(site, entry))
    if "entry_points.txt" in source.dist_info_filenames:
        for script, module, attr, _ in parse_entrypoints(source.read_dist_info("entry_points.txt")):
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", script) or not re.fullmatch(r"[A-Za-z0-9_.]+", module) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", attr):
                sys.exit(UNSUPPORTED)
            targets.append(os.path.join(scripts, script))
    requested = canonicalize_name(name) in requested_names.split(",")
    targets += [os.path.join(site, info, f) for f in ["INSTALLER", "RECORD"] + (["REQUESTED"] if requested else [])]
    return source, name, version, requested, targets


try:
    plans = [plan(path) for path in wheels]
    targets = [t for p in plans for t in p[4]]
    # pip overwrites what is there (another distribution's file, a wheel's own INSTALLER); installer refuses.
    if len(set(targets)) != len(targets) or any(os.path.lexists(t) for t in targets):
        sys.exit(UNSUPPORTED)
except Exception:
    sys.exit(UNSUPPORTED)  # a wheel this path does not understand: nothing is written yet
print("Installing collected packages: " + ", ".join(p[1] for p in plans), flush=True)
for source, name, version, requested, _ in plans:
    extra = {"INSTALLER": b"codegen-worker\n", **({"REQUESTED": b""} if requested else {})}
    install(source, PipLayout(), extra)
print("Successfully installed " + " ".join("%s-%s" % (p[1], p[2]) for p in plans), flush=True)
