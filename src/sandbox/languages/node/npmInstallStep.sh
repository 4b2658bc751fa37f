# Step 2 of an npm install: the fetched tree into the environment, as the session (a failure
# leaves the old node_modules in place). Arguments: the fetched tree's directory, the
# environment's.
#
# Passed whole to `/bin/sh -c` (npmInstall.ts reads it). Only POSIX sh: /bin/sh is the host's
# (dash on Debian).
# shellcheck shell=sh

set -e
from=$1; env=$2
cd "$env"
rm -rf node_modules.next node_modules.old
if [ -d "$from/node_modules" ]; then cp -RP --preserve=mode,timestamps "$from/node_modules" node_modules.next; else mkdir node_modules.next; fi
cp "$from/package.json" package.json.next
if [ -f "$from/package-lock.json" ]; then cp "$from/package-lock.json" package-lock.json.next; fi
if [ -e node_modules ]; then mv node_modules node_modules.old; fi
mv node_modules.next node_modules
mv -f package.json.next package.json
if [ -f package-lock.json.next ]; then mv -f package-lock.json.next package-lock.json; fi
rm -rf node_modules.old
echo "installed into the environment"
