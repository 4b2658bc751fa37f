import { readFileSync } from 'node:fs';

/**
 * run.go's launcher, the /bin/sh script of goRun.sh (which says what it does, its arguments and
 * exit codes), read once from the checkout: the compiled module runs from
 * dist/src/sandbox/languages/go/.
 */
export const GO_RUN_SCRIPT = readFileSync(new URL('../../../../../src/sandbox/languages/go/goRun.sh', import.meta.url), 'utf8');
