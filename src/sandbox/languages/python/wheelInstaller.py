# Installs wheels the worker already has (wheelStore.ts) into a session's environment, as the
# session, with the standard library only: no pip to import or start, no resolution, no index.
# It does what pip does for a wheel (PEP 427): the files into site-packages, `.data/scripts`
# and console/gui entry points into bin/ pointing at the environment's python, INSTALLER,
# REQUESTED and a RECORD of every file with its hash. It prints pip's two lines, so progress
# and outputs read the same.
#
# argv[1]: JSON {"wheels": [paths], "requested": [canonical names], "site": site-packages,
# "scripts": bin/}. Run by the environment's `python -I -S` (nothing of the environment's own,
# no .pth file, runs first) in a sandbox showing the environment writable and the wheels
# read-only: the session's code runs with the environment read-only, so no warm fork can do it. Every wheel is checked
# before anything is written; exit code 3 means "not for this path" (a .data directory other
# than purelib/platlib/scripts, an odd name): nothing was written and pip does the install.
#
# Passed whole to `python -I -S -c` (pythonLanguage.ts; wheelInstaller.ts reads it).

import base64, csv, hashlib, importlib.util, io, json, os, py_compile, re, sys, zipfile

request = json.loads(sys.argv[1])
site, scripts = request["site"], request["scripts"]
python = os.path.join(scripts, "python")
UNSUPPORTED = 3

def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def plan(path):
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
    infos = [m.group(1) for m in map(re.compile(r"([A-Za-z0-9_.]+-[A-Za-z0-9_.!+]+)\.dist-info/WHEEL").fullmatch, names) if m]
    if len(infos) != 1:
        sys.exit(UNSUPPORTED)
    dist_info = infos[0] + ".dist-info"
    data = infos[0] + ".data/"
    name, version = infos[0].rsplit("-", 1)
    # The distribution inside must be the one the file name says (what the worker checked and reports).
    named = os.path.basename(path).split("-")
    if canonical(named[0]) != canonical(name) or named[1] != version:
        sys.exit(UNSUPPORTED)
    files = []
    for entry in names:
        parts = entry.split("/")
        if entry.startswith("/") or "\\" in entry or ".." in parts or "" in parts[:-1]:
            sys.exit(UNSUPPORTED)
        if entry.endswith("/"):
            continue
        if entry.startswith(data):
            kind, _, rest = entry[len(data):].partition("/")
            if kind in ("purelib", "platlib") and rest:
                files.append((entry, os.path.join(site, rest), rest, False))
            elif kind == "scripts" and rest and "/" not in rest:
                files.append((entry, os.path.join(scripts, rest), os.path.relpath(os.path.join(scripts, rest), site), True))
            else:
                sys.exit(UNSUPPORTED)
        elif entry != dist_info + "/RECORD":
            files.append((entry, os.path.join(site, entry), entry, False))
    return archive, name, version, dist_info, files

def digest(content):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()

def write(target, content, executable):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as out:
        out.write(content)
    if executable:
        os.chmod(target, 0o755)

def entry_points(archive, dist_info):
    try:
        text = archive.read(dist_info + "/entry_points.txt").decode()
    except KeyError:
        return []
    found, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif "=" in line and section in ("console_scripts", "gui_scripts"):
            script, target = (part.strip() for part in line.split("=", 1))
            target = target.split("[", 1)[0].strip()
            module, _, attr = (part.strip() for part in target.partition(":"))
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", script) or not re.fullmatch(r"[A-Za-z0-9_.]+", module) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", attr):
                sys.exit(UNSUPPORTED)
            found.append((script, module, attr))
    return found

LAUNCHER = r"""#!%s
# -*- coding: utf-8 -*-
import re
import sys
from %s import %s
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\.pyw|\.exe)?$", "", sys.argv[0])
    sys.exit(%s())
"""

try:
    plans = [plan(path) for path in request["wheels"]]
    points = [entry_points(archive, dist_info) for archive, _, _, dist_info, _ in plans]
except Exception:
    sys.exit(UNSUPPORTED)  # a wheel this path does not understand: nothing is written yet
print("Installing collected packages: " + ", ".join(p[1] for p in plans), flush=True)
for (archive, name, version, dist_info, files), launchers in zip(plans, points):
    record = []
    for entry, target, recorded, is_script in files:
        content = archive.read(entry)
        if is_script and content.startswith(b"#!python"):
            content = b"#!" + python.encode() + content[len(b"#!python"):]
        # Executable when the archive says so, as pip decides it.
        write(target, content, bool((archive.getinfo(entry).external_attr >> 16) & 0o111))
        record.append((recorded, digest(content), str(len(content))))
        if target.endswith(".py") and not is_script:
            # Compiled now, as pip does: the environment is read-only to the session's code later.
            compiled = importlib.util.cache_from_source(target)
            try:
                py_compile.compile(target, cfile=compiled, doraise=True)
            except (py_compile.PyCompileError, SyntaxError, ValueError):
                continue
            with open(compiled, "rb") as f:
                data = f.read()
            record.append((os.path.relpath(compiled, site), digest(data), str(len(data))))
    for script, module, attr in launchers:
        content = (LAUNCHER % (python, module, attr.split(".")[0], attr)).encode()
        target = os.path.join(scripts, script)
        write(target, content, True)
        record.append((os.path.relpath(target, site), digest(content), str(len(content))))
    extra = {"INSTALLER": b"codegen-worker\n"}
    if canonical(name) in request["requested"]:
        extra["REQUESTED"] = b""
    for file, content in extra.items():
        target = os.path.join(site, dist_info, file)
        write(target, content, False)
        record.append((dist_info + "/" + file, digest(content), str(len(content))))
    record.append((dist_info + "/RECORD", "", ""))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(record)
    write(os.path.join(site, dist_info, "RECORD"), buffer.getvalue().encode(), False)
print("Successfully installed " + " ".join("%s-%s" % (p[1], p[2]) for p in plans), flush=True)
