#!/usr/bin/env bash
# The unit tier (`make test-unit`, and the first tier of `make test`): node --test over
# dist/tests/unit, in as many processes as cores (at least two), each importing a group of the
# files. A process per file spent more time starting (node, its test runner, the modules) than
# its tests took; files sharing a process must leave process-wide state (environment, working
# directory) as they found it, and one that patches a module for the whole process says so on
# its first line ('// unit: own process') and gets a process of its own.
#
# Run by root, it proves the tier needs neither root nor Python: it runs as nobody with node
# alone on PATH. nobody must reach the checkout by a path, and the checkout may live where
# nobody cannot search (under /root, in a mktemp -d directory). So the tier runs in a private
# mount namespace where the checkout and the node binary are bound under a fresh directory
# anyone can search: nothing is copied, nothing depends on the checkout's parents. Where that
# cannot be (no mount namespace, a checkout nobody may read), one line says so and the tier runs
# as the caller. Run by anyone else, it runs as the caller.
set -euo pipefail
cd "$(dirname "$0")/.."
# Arguments: the files (or directories of them) to run (default: every one).
if [ $# -gt 0 ]; then mapfile -t files < <(find "$@" -name '*.test.js' | sort); else mapfile -t files < <(find dist/tests/unit -name '*.test.js' | sort); fi
[ ${#files[@]} -gt 0 ] || { echo "unit tier: no tests in dist/tests/unit (build first)" >&2; exit 1; }
cores=$(nproc)
groups=$((cores > 2 ? cores : 2))
# write_groups DIR CHECKOUT: DIR/group-N.mjs import the files, dealt in turn, as CHECKOUT/<file>;
# a file whose source's first line is '// unit: own process' (it patches a module for the whole
# process) gets a group of its own, so what it changes is the same on every machine.
write_groups() {
  local i=0 alone=0 file relative source
  for file in "${files[@]}"; do
    relative=$(realpath --relative-to=. "$file")
    source="tests/${relative#dist/tests/}"
    if head -n 1 "${source%.js}.ts" 2>/dev/null | grep -q '^// unit: own process'; then
      printf "import '%s/%s';\n" "$2" "$relative" >"$1/group-own-$alone.mjs"
      alone=$((alone + 1))
    else
      printf "import '%s/%s';\n" "$2" "$relative" >>"$1/group-$((i % groups)).mjs"
      i=$((i + 1))
    fi
  done
  chmod 644 "$1"/group-*.mjs
}
own='' view=''
# Never rm -r: the binds live in the namespace alone, but this must not reach a checkout if not.
clean_up() {
  [ -z "$own" ] || { rm -f "$own"/group-*.mjs && rmdir "$own"; }
  [ -z "$view" ] || { rm -f "$view/bin/node" "$view/groups"/group-*.mjs && rmdir "$view/bin" "$view/checkout" "$view/groups" "$view"; }
}
trap clean_up EXIT
as_caller() {
  own=$(mktemp -d)
  write_groups "$own" "$PWD"
  node --test --test-concurrency="$groups" "$own"/group-*.mjs
}
[ "$(id -u)" = 0 ] || { as_caller; exit; }

node=$(readlink -f "$(command -v node)")
view=$(mktemp -d)
chmod 755 "$view" && mkdir -m 755 "$view/checkout" "$view/bin" "$view/groups" && : >"$view/bin/node"
write_groups "$view/groups" "$view/checkout"

# Inside the namespace: bind, check that nobody can read the tier through the view, then run.
# Its exit codes: 0/1 from node --test; 97 when nobody cannot read what it needs.
inside='checkout=$1 view=$2 node=$3 groups=$4; shift 4
mount --bind "$checkout" "$view/checkout" && mount --bind "$node" "$view/bin/node" || exit 96
cd "$view/checkout"
nobody="setpriv --reuid=nobody --regid=nogroup --clear-groups"
$nobody test -r dist/tests/unit -a -x "$view/bin/node" -a -r package.json || exit 97
echo "unit tier: as nobody, node alone on PATH (the checkout bound at $view/checkout)"
exec $nobody env PATH="$view/bin" node --test --test-concurrency="$groups" "$@"'
if unshare --mount --propagation private true 2>/dev/null; then
  set +e
  unshare --mount --propagation private sh -c "$inside" unit-tier "$PWD" "$view" "$node" "$groups" "$view/groups"/group-*.mjs
  status=$?
  set -e
  case $status in
    96) echo "unit tier: could not bind the checkout in a mount namespace; running as $(id -un), not nobody" ;;
    97) echo "unit tier: nobody cannot read this checkout (its own modes); running as $(id -un), not nobody" ;;
    *) exit $status ;;
  esac
else
  echo "unit tier: no private mount namespace here; running as $(id -un), not nobody"
fi
as_caller
