# What the worker learns of the Python interpreter sessions are based on, asked once at start
# (pythonInterpreter.ts reads this and runs it with `-I -c`): one JSON line with its executable,
# version, lib/ folder name, prefix, and the host pip's version and runner (null without pip).

import json, os, sys
try:
    from importlib.metadata import version
    pip = version("pip")
except Exception:
    pip = None
try:
    import importlib.util
    runner = os.path.join(os.path.dirname(importlib.util.find_spec("pip").origin), "__pip-runner__.py")
    runner = runner if os.path.exists(runner) else None
except Exception:
    runner = None
print(json.dumps({"executable": sys.executable, "version": "%d.%d.%d" % sys.version_info[:3],
                  "libName": "python%d.%d" % sys.version_info[:2], "prefix": sys.base_prefix, "pip": pip, "runner": runner}))
