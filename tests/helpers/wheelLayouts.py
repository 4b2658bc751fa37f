# Lays one set of wheels out twice, by pip and by the worker's wheelInstaller.py (outside any
# sandbox, each into an environment of its own), and prints what each made, file by file, as
# JSON (tests/wheel-installer.test.ts).
#
# argv: the driver's source file, installer's package directory, a case as JSON:
#   {"wheels": [{"name", "version", "files": {path: text}, "modes": {path: mode},
#                "unrecorded": [paths], "wheelVersion"}], "existing": [site-packages paths],
#    "pip": whether pip lays them out too}
# Prints {"exit": the driver's exit code, "stderr", "before"/"after": the driver's environment's
# files, "ours"/"pip": layouts}. A layout lists each distribution's RECORD rows in order, each with
# the file it names: its content's digest (the environment's path in it read as ENV), whether
# RECORD's hash and size match it, its mode. What differs by design is masked: INSTALLER (it names
# the installer), an entry point's launcher (each installer's template; its #! line is kept),
# bytecode's content (it holds its source's mtime) and RECORD's own bytes (pip ends its lines with
# CRLF; its rows are compared one by one instead).

import base64, csv, hashlib, json, os, shutil, stat, subprocess, sys, tempfile, zipfile

driver, installer, case = open(sys.argv[1]).read(), sys.argv[2], json.loads(sys.argv[3])
work = tempfile.mkdtemp()


def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build(spec):
    dist, version = spec["name"].replace("-", "_"), spec["version"]
    info = "%s-%s.dist-info" % (dist, version)
    files = dict(spec["files"])
    files.setdefault(info + "/METADATA", "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (spec["name"], version))
    files.setdefault(info + "/WHEEL", "Wheel-Version: %s\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n" % spec.get("wheelVersion", "1.0"))
    path = os.path.join(work, "wheels", "%s-%s-py3-none-any.whl" % (dist, version))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            entry = zipfile.ZipInfo(name)
            entry.external_attr = (stat.S_IFREG | spec.get("modes", {}).get(name, 0o644)) << 16
            archive.writestr(entry, text.encode())
            if name not in spec.get("unrecorded", []):
                record.append([name, digest(text.encode()), str(len(text.encode()))])
        record.append([info + "/RECORD", "", ""])
        archive.writestr(info + "/RECORD", "".join(",".join(row) + "\n" for row in record))
    return path


def environment(name):
    env = os.path.join(work, name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env], check=True)
    site = subprocess.run([env + "/bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    return env, site


def files_in(env):
    return sorted(os.path.relpath(os.path.join(d, f), env) for d, _, fs in os.walk(env) for f in fs)


def layout(env, site):
    out = []
    for info in sorted(n for n in os.listdir(site) if n.endswith(".dist-info")):
        out.append(info)
        launchers = set()
        if os.path.exists(os.path.join(site, info, "entry_points.txt")):
            launchers = {line.split("=")[0].strip() for line in open(os.path.join(site, info, "entry_points.txt")) if "=" in line}
        for path, hash_, size in csv.reader(open(os.path.join(site, info, "RECORD"), newline="").read().splitlines()):
            full = os.path.normpath(os.path.join(site, path))
            content = open(full, "rb").read()
            matches = "no hash" if not hash_ else "hash ok" if (hash_, size) == (digest(content), str(len(content))) else "HASH WRONG"
            shown = hashlib.sha256(content.replace(env.encode(), b"ENV")).hexdigest()[:16]
            if path.endswith((".dist-info/INSTALLER", ".dist-info/RECORD", ".pyc")):
                shown = "-"
            elif os.path.basename(path) in launchers and path.startswith(".."):
                shown = "launcher " + content.splitlines()[0].decode().replace(env, "ENV")
            out.append("%s %s %s %s" % (path, shown, matches, oct(stat.S_IMODE(os.stat(full).st_mode))))
    return out


wheels = [build(spec) for spec in case["wheels"]]
ours, site = environment("ours")
for path in case.get("existing", []):
    os.makedirs(os.path.dirname(os.path.join(site, path)), exist_ok=True)
    open(os.path.join(site, path), "w").write("there before\n")
requested = sorted({spec["name"].lower().replace("_", "-") for spec in case["wheels"]})
before = files_in(ours)
run = subprocess.run([ours + "/bin/python", "-I", "-S", "-c", driver, installer, site, ours + "/bin", ",".join(requested), *wheels], capture_output=True, text=True)
result = {"exit": run.returncode, "stdout": run.stdout, "stderr": run.stderr, "before": before, "after": files_in(ours)}
if run.returncode == 0:
    result["ours"] = layout(ours, site)
if case.get("pip"):
    theirs, their_site = environment("pip")
    names = ["%s==%s" % (spec["name"], spec["version"]) for spec in case["wheels"]]
    subprocess.run([sys.executable, "-m", "pip", "--python", theirs + "/bin/python", "install", "-q", "--no-deps", "--no-index", "--disable-pip-version-check",
                    "--find-links", os.path.join(work, "wheels"), *names], check=True)
    result["pip"] = layout(theirs, their_site)
shutil.rmtree(work)
print(json.dumps(result))
