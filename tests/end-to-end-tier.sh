#!/usr/bin/env bash
# The end-to-end tier: real workers over gRPC, as root. Files that measure time, race the
# warm interpreter's timing, or look at the whole host (processes, mounts, links, namespaces,
# load) run one at a time, alone, after the others; the others run five files at a time (their
# workers claim their own uid blocks, data directories, loop devices and namespaces, and much of
# their time is spent waiting: two at a time left a third of the CPU idle, three some too, and
# with four a whole make test used 13 of its 20 core-minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
# Not tests/unit (the unit tier) nor tests/static (make lint). node --test runs files in name
# order whatever order they are given in.
all=$(find dist/tests -name '*.test.js' -not -path 'dist/tests/unit/*' -not -path 'dist/tests/static/*' | sort)
[ -n "$all" ] || { echo "end-to-end tier: no tests in dist/tests (build first)"; exit 1; }
exclusive=()
shared=()
for file in $all; do
  source="tests/${file#dist/tests/}"
  if head -n 1 "${source%.js}.ts" | grep -q '^// end-to-end: alone'; then exclusive+=("$file"); else shared+=("$file"); fi
done
# Both phases run whatever the first's outcome, so one run shows every failure. BESIDE (make
# test: lint) runs beside both phases at SCHED_IDLE: the kernel gives it only a CPU no test
# wants (any test's process waking preempts it). The shared phase keeps both CPUs busy, the files
# alone leave much of them idle: that is where it runs. Its output is shown at the end.
status=0
beside=''
if [ -n "${BESIDE:-}" ]; then
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  chrt --idle 0 bash -c "$BESIDE" >"$log" 2>&1 &
  beside=$!
fi
node --test --test-concurrency=5 "${shared[@]}" || status=1
node --test --test-concurrency=1 "${exclusive[@]}" || status=1
if [ -n "$beside" ]; then
  wait "$beside" || { status=1; echo "end-to-end tier: '$BESIDE' failed:"; }
  cat "$log"
fi
exit $status
