# run.go's launcher, a /bin/sh script run as the session in its sandbox (arguments: the go
# command, the toolchain's identity, the environment as the sandbox shows it), `code` on stdin,
# the workspace as its cwd.
#
# It builds `code` as main.go of a copy of the session's module (the workspace's go.mod and
# go.sum; a legacy session's in the environment, from before the module moved to the workspace;
# else a fresh module requiring nothing) in a fresh temporary directory, so imports of installed
# modules resolve and nothing of the workspace or the environment but its build cache is
# written, then runs the program in the workspace.
#
# Linked programs are cached in the build cache (gocache/codegen-run/<key>), keyed by a hash of
# everything a build reads: the code, go.mod, go.sum, the go env file, the toolchain and every
# variable that changes a build (GO*, CGO_*, CC, ...): running the same code again skips
# compiling and linking (the go command's own cache skips only the compiling). A build's key is
# computed again from the copies it built (the session may change its files meanwhile), so a
# program is only ever found under what it was built from. Flags naming files of their own
# (-overlay, -modfile, a GOWORK file) make the key a fresh one: built every time. The newest 16
# programs are kept. A build goes to a temporary name renamed into place, so concurrent runs
# never see half a program. Exit codes:
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
if [ -f go.mod ]; then dir=.; elif [ -f "$env/go.mod" ]; then dir=$env; else dir=; fi
goenv=${GOENV-}
[ -n "$goenv" ] || goenv=${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}/go/env
nonce=
case " ${GOFLAGS-} " in *-overlay* | *-modfile*) nonce=$$.$(date +%s%N) ;; esac
case ${GOWORK-} in '' | off) ;; *) nonce=$$.$(date +%s%N) ;; esac
if [ "$goenv" != off ] && [ -f "$goenv" ] && grep -q -e -overlay -e -modfile -e GOWORK "$goenv"; then nonce=$$.$(date +%s%N); fi
# The key of a build from module files $1 (go.mod) and $2 (go.sum) and go env file $3.
key_of() {
  { printf '%s\n%s\n' "$toolchain" "$nonce"; env | grep -E '^(GO[A-Z0-9_]*|CGO_[A-Z0-9_]*|CC|CXX|AR|PKG_CONFIG)=' | LC_ALL=C sort; printf '%s\n' "$code" | sha256sum
    for f in "$1" "$2" "$3"; do if [ -f "$f" ]; then sha256sum < "$f"; else echo none; fi; done; } | sha256sum | cut -c1-64
}
if [ "$goenv" = off ]; then goenv_file=/nonexistent; else goenv_file=$goenv; fi
key=$(key_of "${dir:-/nonexistent}/go.mod" "${dir:-/nonexistent}/go.sum" "$goenv_file")
programs=$env/gocache/codegen-run
if [ ! -x "$programs/$key" ]; then
  src=$(mktemp -d) || exit 125
  if ! { printf '%s\n' "$code" > "$src/main.go" && mkdir -p "$programs"; }; then rm -rf "$src"; exit 125; fi
  if [ -n "$dir" ]; then
    cp "$dir/go.mod" "$src/go.mod" && { [ ! -f "$dir/go.sum" ] || cp "$dir/go.sum" "$src/go.sum"; }
  else
    printf 'module session\n\ngo %s\n' "$language" > "$src/go.mod"
  fi || { rm -rf "$src"; exit 125; }
  built_env=off
  if [ -f "$goenv_file" ]; then
    if ! cp "$goenv_file" "$src/.goenv"; then rm -rf "$src"; exit 125; fi
    built_env=$src/.goenv
  fi
  key=$(key_of "$src/go.mod" "$src/go.sum" "$src/.goenv")
  (cd "$src" && GOENV=$built_env exec "$go" build -o program main.go)
  status=$?
  if [ "$status" -ne 0 ]; then rm -rf "$src"; exit "$status"; fi
  new=$(mktemp "$programs/.new-XXXXXX") && cp "$src/program" "$new" && chmod 755 "$new" && mv -f "$new" "$programs/$key"
  status=$?
  rm -rf "$src"
  if [ "$status" -ne 0 ]; then rm -f "$new"; exit 125; fi
  # shellcheck disable=SC2012 # for ls -t (newest first); the names are hashes, no odd characters
  ls -t "$programs" | tail -n +17 | while IFS= read -r old; do rm -f "$programs/$old"; done
else
  touch -c "$programs/$key" 2>/dev/null
fi
PATH=$program_path
exec "$programs/$key"
