# run.go's launcher, a /bin/sh script run as the session in its sandbox (arguments: the go
# command, the toolchain's identity, the environment as the sandbox shows it), `code` on stdin,
# the workspace as its cwd.
#
# It builds `code` as a main.go of its own (in a fresh temporary directory) as part of the
# session's module: the workspace's go.mod, so imports of installed modules and of the
# workspace's own packages resolve as `go build` there would. Without one (the session removed
# it) a fresh module with no requirements stands in; a legacy session's module in the
# environment (go.mod there, before the module moved to the workspace) is used as a copy.
# Nothing of the environment but its build cache is written. The program runs in the workspace.
#
# Linked programs are cached in the build cache (gocache/codegen-run/<key>), keyed by a hash of
# the code, go.mod, go.sum, the toolchain and every variable that changes a build (GO*, CGO_*,
# CC, ...): running the same code again skips compiling and linking (the go command's own cache
# skips only the compiling). When the program may depend on more than those (the code imports
# the workspace module's own packages, go.mod replaces a module, or a go.work is there) the key
# is a fresh one: built every time. The newest 16 programs are kept. A build goes to a
# temporary name renamed into place, so concurrent runs never see half a program. Exit codes:
# the build's when it fails (a compile error: 2, as the go command's, the compiler's message on
# stderr), else the program's; 125 when the launcher itself cannot work (no space for the build).
#
# Passed whole to `/bin/sh -c` (goLanguage.ts; goRun.ts reads it). Only POSIX sh: /bin/sh is the
# host's (dash on Debian).
# shellcheck shell=sh
IFS=' 	
'
go=$1 toolchain=$2 env=$3 language=$4
program_path=$PATH
PATH=/usr/bin:/bin
code=$(cat)
if [ -f go.mod ]; then
  module=workspace
  path=$(sed -n 's/^module[[:space:]]*"\{0,1\}\([^"[:space:]]*\).*/\1/p' go.mod | head -n 1)
  fresh=
  if [ -e go.work ] || grep -q '=>' go.mod; then fresh=$$.$(date +%s%N); fi
  case $code in *\""$path"\"* | *\""$path"/*) fresh=$$.$(date +%s%N) ;; esac
  sums=$( { cat go.mod; printf '\n--\n'; cat go.sum 2>/dev/null; printf '%s\n' "$fresh"; } | sha256sum)
elif [ -f "$env/go.mod" ]; then
  module=environment
  sums=$(cat "$env/go.mod" "$env/go.sum" 2>/dev/null | sha256sum)
else
  module=none
  sums=none
fi
key=$( { printf '%s\n%s\n%s\n' "$toolchain" "$module" "$sums"; env | grep -E '^(GO[A-Z0-9_]*|CGO_[A-Z0-9_]*|CC|CXX|AR|PKG_CONFIG)=' | LC_ALL=C sort; printf '%s\n' "$code" | sha256sum; } | sha256sum)
# shellcheck disable=SC2086 # split on purpose: $1 is the hash (sha256sum prints "<hash>  -")
set -- $key
programs=$env/gocache/codegen-run
program=$programs/$1
if [ -x "$program" ]; then
  touch -c "$program" 2>/dev/null
else
  src=$(mktemp -d) || exit 125
  if ! { printf '%s\n' "$code" > "$src/main.go" && mkdir -p "$programs"; }; then rm -rf "$src"; exit 125; fi
  case $module in
    workspace) "$go" build -o "$src/program" "$src/main.go" ;;
    environment) cp "$env/go.mod" "$src/" && { [ ! -f "$env/go.sum" ] || cp "$env/go.sum" "$src/"; } && (cd "$src" && exec "$go" build -o program main.go) ;;
    *) printf 'module session\n\ngo %s\n' "$language" > "$src/go.mod" && (cd "$src" && exec "$go" build -o program main.go) ;;
  esac
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
