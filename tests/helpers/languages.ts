/**
 * What the per-language tests need of each session language: its run tool, code that prints,
 * code that starts a process tree, and a test suite run.shell runs in the workspace. A language
 * added to the worker adds its case here, and every test iterating LANGUAGE_CASES covers it.
 */
export interface LanguageCase {
  language: 'python' | 'node' | 'go';
  /** The tool that runs `code` in a session of the language. */
  runTool: string;
  /** Code printing `hello` and a newline. */
  hello: string;
  /**
   * Code that starts a child and a grandchild that leaves the process group (setsid), prints
   * `tree started` once all run, then sleeps a minute: what cancel and timeout must end whole.
   */
  spawner: string;
  /** A test suite in the workspace (path → contents), the run.shell command running it, and what its output shows when it passed. */
  testSuite: { files: Record<string, string>; command: string; passed: RegExp };
}

export const PYTHON_CASE: LanguageCase = {
  language: 'python',
  runTool: 'run.python',
  hello: 'print("hello")',
  spawner: `
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, b"up"); os.close(w)
        time.sleep(60); os._exit(0)
    os._exit(0)
os.close(w)
os.read(r, 2)
print("tree started", flush=True)
time.sleep(60)
`,
  testSuite: {
    files: {
      'calc.py': 'def add(a, b):\n    return a + b\n',
      'test_calc.py':
        'import unittest\nfrom calc import add\n\nclass CalcTest(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n    def test_negative(self):\n        self.assertEqual(add(-2, 1), -1)\n',
    },
    command: 'python -m unittest -v',
    passed: /Ran 2 tests[\s\S]*OK/,
  },
};

export const NODE_CASE: LanguageCase = {
  language: 'node',
  runTool: 'run.node',
  hello: 'console.log("hello")',
  spawner: `
const { spawn } = require("node:child_process");
const child = spawn(process.execPath, ["-e", \`
  const { spawn } = require("node:child_process");
  spawn(process.execPath, ["-e", "console.log('up'); setTimeout(() => {}, 60000)"], { detached: true, stdio: ["ignore", "inherit", "ignore"] });
  setTimeout(() => {}, 60000);
\`], { stdio: ["ignore", "pipe", "inherit"] });
child.stdout.once("data", () => console.log("tree started"));
setTimeout(() => {}, 60000);
`,
  testSuite: {
    files: {
      'calc.js': 'exports.add = (a, b) => a + b;\n',
      'calc.test.js':
        'const test = require("node:test");\nconst assert = require("node:assert");\nconst { add } = require("./calc");\n\ntest("adds", () => assert.equal(add(2, 3), 5));\ntest("negative", () => assert.equal(add(-2, 1), -1));\n',
    },
    command: 'node --test',
    passed: /# pass 2[\s\S]*# fail 0/,
  },
};

export const GO_CASE: LanguageCase = {
  language: 'go',
  runTool: 'run.go',
  hello: 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello")\n}\n',
  spawner: `package main

import (
	"fmt"
	"os/exec"
	"time"
)

func main() {
	if err := exec.Command("sleep", "60").Start(); err != nil {
		panic(err)
	}
	// The shell returns once its setsid grandchild runs (its output elsewhere, so Output does not wait for it).
	if _, err := exec.Command("/bin/sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo up").Output(); err != nil {
		panic(err)
	}
	fmt.Println("tree started")
	time.Sleep(60 * time.Second)
}
`,
  testSuite: {
    files: {
      'go.mod': 'module calc\n\ngo 1.19\n',
      'calc.go': 'package calc\n\nfunc Add(a, b int) int { return a + b }\n',
      'calc_test.go':
        'package calc\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal("2+3")\n\t}\n}\n\nfunc TestNegative(t *testing.T) {\n\tif Add(-2, 1) != -1 {\n\t\tt.Fatal("-2+1")\n\t}\n}\n',
    },
    command: 'go test -v ./...',
    passed: /--- PASS: TestAdd[\s\S]*--- PASS: TestNegative[\s\S]*^ok\s+calc\b/m,
  },
};

/** Every language the worker has; tests start their worker with WORKER_LANGUAGES naming all of these. */
export const LANGUAGE_CASES: readonly LanguageCase[] = [PYTHON_CASE, NODE_CASE, GO_CASE];

/**
 * A run.shell command that starts the same kind of tree as LanguageCase.spawner: it says so once
 * the process that left its session group has done so (it names a file after its setsid).
 */
export const SHELL_SPAWNER =
  'rm -f .escaped; sleep 60 & setsid sh -c "touch .escaped; exec sleep 60" & while [ ! -e .escaped ]; do sleep 0.01; done; echo "tree started"; wait';
