import { readFileSync } from 'node:fs';

/** ptyHelper.py's program, read once from the checkout (the compiled module runs from dist/src/sandbox/session/). */
export const PTY_HELPER_SOURCE = readFileSync(new URL('../../../../src/sandbox/session/ptyHelper.py', import.meta.url), 'utf8');
