# run.go's launcher, a /bin/sh script run as the session in its sandbox (arguments: the go
# command, the toolchain's identity, the environment as the sandbox shows it), `code` on stdin.
#
# It builds `code` as main.go of a copy of the session's module (go.mod, go.sum) in a fresh
# temporary directory, so imports of installed modules resolve and nothing of the environment
# but its build cache is written, then runs the program in the workspace (its cwd).
#
# Linked programs are cached in the build cache (gocache/codegen-run/<key>), keyed by a hash of
# the code, go.mod, go.sum, the toolchain and every variable that changes a build (GO*, CGO_*,
# CC, ...): running the same code again skips compiling and linking (the go command's own cache
# skips only the compiling). The newest 16 programs are kept. A build goes to a temporary name
# renamed into place, so concurrent runs never see half a program. Exit codes: the build's when
# it fails (a compile error: 2, as the go command's, the compiler's message on stderr), else the program's; 125 when
# the launcher itself cannot work (no space for the build).
#
# Passed whole to `/bin/sh -c` (goLanguage.ts; goRun.ts reads it). Only POSIX sh: /bin/sh is the
# host's (dash on Debian).
# shellcheck shell=sh
IFS=' 	
'
go=$1 toolchain=$2 env=$3
program_path=$PATH
PATH=/usr/bin:/bin
code=$(cat)
key=$( { printf '%s\n' "$toolchain"; env | grep -E '^(GO[A-Z0-9_]*|CGO_[A-Z0-9_]*|CC|CXX|AR|PKG_CONFIG)=' | LC_ALL=C sort; printf '%s\n' "$code" | sha256sum; sha256sum "$env/go.mod" "$env/go.sum"; } | sha256sum)
# shellcheck disable=SC2086 # split on purpose: $1 is the hash (sha256sum prints "<hash>  -")
set -- $key
programs=$env/gocache/codegen-run
program=$programs/$1
if [ -x "$program" ]; then
  touch -c "$program" 2>/dev/null
else
  src=$(mktemp -d) || exit 125
  if ! { printf '%s\n' "$code" > "$src/main.go" && cp "$env/go.mod" "$env/go.sum" "$src/" && mkdir -p "$programs"; }; then rm -rf "$src"; exit 125; fi
  (cd "$src" && exec "$go" build -o program main.go)
  status=$?
  if [ "$status" -ne 0 ]; then rm -rf "$src"; exit "$status"; fi
  new=$(mktemp "$programs/.new-XXXXXX") && cp "$src/program" "$new" && chmod 755 "$new" && mv -f "$new" "$program"
  status=$?
  rm -rf "$src"
  if [ "$status" -ne 0 ]; then rm -f "$new"; exit 125; fi
  # shellcheck disable=SC2012 # for ls -t (newest first); the names are hashes, no odd characters
  ls -t "$programs" | tail -n +17 | while IFS= read -r old; do rm -f "$programs/$old"; done
fi
PATH=$program_path
exec "$program"
