# `make run` starts the worker; `make test` runs the whole suite. Both install and build what is
# missing or stale first, and nothing more.
SHELL := /bin/bash
BIN := node_modules/.bin
SOURCES := $(shell find src gen tests bench -name '*.ts' 2>/dev/null)
# Foreign code: what the worker hands to Python and /bin/sh (the threads' .cjs files are
# JavaScript, linted with the rest), each in its own file beside the module that reads it at run
# time, from the checkout (dist/ holds no copy; the image has src/).
PYTHON_SOURCES := $(shell find src -name '*.py' 2>/dev/null)
SHELL_SOURCES := $(shell find src -name '*.sh' 2>/dev/null)
GO_SOURCES := $(shell find src -name '*.go' 2>/dev/null)
# The interpreter sessions are based on compiles the .py files.
PYTHON := $(or $(WORKER_PYTHON),python3)
ARGS ?=

.PHONY: help run test test-unit bench build client-package generate lint format check-generated system-deps test-deps lint-deps clean
.DEFAULT_GOAL := help

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 24

# On a cgroup v2 host run by systemd the worker gets a scope of its own, its cgroup delegated to
# it (Delegate=yes): a login session's group is not its to manage (README: What a node needs).
DELEGATE := $(shell [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -d /run/systemd/system ] && [ "$$(cat /proc/self/cgroup)" != "0::/" ] && command -v systemd-run >/dev/null && echo 'systemd-run --scope --quiet --collect -p Delegate=yes')

run: system-deps dist/.built ## start the worker (flags: make run ARGS='--grpc-addr 127.0.0.1:0')
	$(DELEGATE) node dist/src/main.js $(ARGS)

# Lint and the check of gen/ run beside the end-to-end tier's shared phase, whose files measure
# no time and leave CPU idle; their output comes, and their failure fails the suite, after it.
# They take dist/ as built (-o): an edit made meanwhile must not rebuild it under running tests.
# The two compilations share nothing but node_modules: side by side they take the 2 cores together.
test: system-deps test-deps node_modules/.installed lint-deps ## the whole suite: the unit tier, then end to end, with lint (needs root)
	$(MAKE) --no-print-directory -j2 dist/.built client/.built
	tests/unit-tier.sh
	BESIDE='$(MAKE) --no-print-directory -o dist/.built -o node_modules/.installed lint check-generated' tests/end-to-end-tier.sh

# The fast tier: pure logic, no root, no bubblewrap, no Python. Run by root, it runs as nobody
# with node alone on PATH, wherever the checkout lives (tests/unit-tier.sh says how).
test-unit: dist/.built ## the fast tier only: no root, no Python, seconds (UNIT_TESTS: some files only)
	tests/unit-tier.sh $(UNIT_TESTS)

# Hot paths against same-run baselines; writes bench/results.json and bench/results.md.
bench: system-deps test-deps dist/.built ## hot paths as ratios to same-run baselines (bench/results.md)
	@command -v zip >/dev/null 2>&1 && command -v unzip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq zip unzip; }
	node dist/bench/run.js

build: dist/.built ## compile to dist/

node_modules/.installed: package.json package-lock.json
	# npm ci refuses this lock file (npm leaves the other platforms' optional buf binaries out of it),
	# so install from it without rewriting it.
	npm install --no-audit --no-fund --no-save
	@touch $@

dist/.built: node_modules/.installed tsconfig.json $(SOURCES)
	rm -rf dist
	$(BIN)/tsc -p tsconfig.json
	@touch $@

# The client as its own npm package in client/ (codegen-mcp-worker-client): the typed client, the
# CLI and the generated code they import, compiled on their own into client/dist, with only the
# client's dependencies. `cd client && npm pack` (or npm publish) runs this first.
CLIENT_SOURCES := $(shell find src/client gen -name '*.ts' 2>/dev/null) src/cli.ts src/version.ts

client-package: client/.built ## the client npm package in client/dist

client/.built: node_modules/.installed tsconfig.json client/tsconfig.json client/package.json $(CLIENT_SOURCES)
	@[ "$$(node -p 'require("./package.json").version')" = "$$(node -p 'require("./client/package.json").version')" ] || { echo "client/package.json's version differs from package.json's: make them the same"; exit 1; }
	rm -rf client/dist
	$(BIN)/tsc -p client/tsconfig.json
	cp LICENSE client/LICENSE
	@touch $@

# What the worker needs from the machine: a Python 3 with pip (pkg.install drives the host's
# pip), PyPA's installer (python3-installer: a list installed before is laid out again without
# pip; without it pip does that too, slower) and bubblewrap (the sandbox); setpriv, prlimit, flock
# and nsenter come with util-linux; sessions' networks need ip (iproute2) and nft (nftables). Go
# sessions (offered unless WORKER_LANGUAGES leaves go out) build with Debian's golang-go.
# deploy/Dockerfile's runtime stage installs these same packages (tests/unit/deploy.test.ts).
system-deps:
	@command -v python3 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3; }
	@python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3-pip; }
	@[ -f /usr/lib/python3/dist-packages/installer/__init__.py ] || { apt-get update -qq && apt-get install -y -qq python3-installer; }
	@command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; }
	@command -v flock >/dev/null 2>&1 && command -v setpriv >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq util-linux; }
	@command -v ip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq iproute2; }
	@command -v nft >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nftables; }
	@case ",$$(echo "$${WORKER_LANGUAGES:-go}" | tr -d ' ')," in *,go,*) command -v go >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq golang-go; } ;; esac

# What the tests need beyond the worker's own: a C compiler (a test builds an LD_PRELOAD library),
# mkfs.xfs (fork tests and the bench make a data directory whose files can be cloned).
test-deps:
	@command -v cc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev; }
	@command -v mkfs.xfs >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq xfsprogs; }

# What `make lint` needs beyond node_modules: pyflakes (Debian's, for Debian's python3),
# shellcheck and gofmt (golang-go, which Go sessions need anyway). pyflakes and shellcheck are
# not in system-deps: the worker (and its image) runs without them.
lint-deps:
	@command -v pyflakes3 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq pyflakes3; }
	@command -v shellcheck >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq shellcheck; }
	@command -v gofmt >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq golang-go; }

# The TypeScript of the protos, and the protos as a FileDescriptorSet for server reflection.
generate: node_modules/.installed ## regenerate gen/ from proto/ (commit the result)
	$(BIN)/buf generate
	$(BIN)/buf build -o gen/codegen.binpb --as-file-descriptor-set

# Protos (buf), formatting (Prettier, the whole tree formatted once), TypeScript and JavaScript
# (typescript-eslint), the Python (compiled without writing bytecode beside it, and pyflakes),
# shell (shellcheck, in the dialect each file names) and Go (gofmt) the worker runs, and the static
# checks of tests/static/ (README snippets compile, code shape, layering).
lint: node_modules/.installed dist/.built lint-deps ## buf lint, prettier --check, eslint, py_compile + pyflakes, shellcheck, gofmt, the static checks
	$(BIN)/buf lint
	$(BIN)/prettier --check --log-level warn .
	$(BIN)/eslint --max-warnings 0 src tests bench
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && $(PYTHON) -X pycache_prefix="$$tmp" -m py_compile $(PYTHON_SOURCES)
	pyflakes3 $(PYTHON_SOURCES)
	@# python -c decodes its program by the locale: ASCII reads the same under every one.
	@! grep -nP '[^\x00-\x7F]' $(PYTHON_SOURCES) || { echo "the .py files above must be ASCII (they are passed to python -c)"; exit 1; }
	shellcheck $(SHELL_SOURCES)
	@unformatted=$$(gofmt -l $(GO_SOURCES)) && [ -z "$$unformatted" ] || { echo "not gofmt-formatted: $$unformatted"; exit 1; }
	node --test --test-reporter=dot dist/tests/static/*.test.js

format: node_modules/.installed ## prettier --write and eslint --fix
	$(BIN)/prettier --write --log-level warn .
	$(BIN)/eslint --fix src tests bench

# gen/ is committed; the build fails when it differs from what the protos generate now.
check-generated: node_modules/.installed
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BIN)/buf generate -o "$$tmp" && $(BIN)/buf build -o "$$tmp/gen/codegen.binpb" --as-file-descriptor-set && \
	diff -r gen "$$tmp/gen" >/dev/null || { echo "gen/ is stale: run 'make generate' and commit gen/"; exit 1; }

clean: ## remove what make built (dist, node_modules, .worker-data)
	rm -rf dist node_modules .worker-data client/dist client/.built
