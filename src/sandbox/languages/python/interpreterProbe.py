# What the worker learns of the Python interpreter sessions are based on, asked once at start
# (pythonInterpreter.ts reads this and runs it with `-I -c`, argv[1] PyPA installer's package
# directory): one JSON line with its executable, version, lib/ folder name, prefix, the host pip's
# version and runner (null without pip), and the version of installer it imports from that
# directory as wheelInstaller.py does (null when it cannot).

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
try:
    import importlib.util
    spec = importlib.util.spec_from_file_location("installer", os.path.join(sys.argv[1], "__init__.py"), submodule_search_locations=[sys.argv[1]])
    sys.modules["installer"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules["installer"])
    for module in ("destinations", "records", "sources", "utils"):  # what wheelInstaller.py imports
        importlib.import_module("installer." + module)
    installer = sys.modules["installer"].__version__
except Exception:
    installer = None
print(json.dumps({"executable": sys.executable, "version": "%d.%d.%d" % sys.version_info[:3],
                  "libName": "python%d.%d" % sys.version_info[:2], "prefix": sys.base_prefix, "pip": pip, "runner": runner,
                  "installer": installer}))
