import { readFileSync } from 'node:fs';

/**
 * The warm interpreter kept in each session's sandbox, the program of zygote.py (what it does and
 * its protocol are said there), read once from the checkout: the compiled module runs from
 * dist/src/sandbox/warm/.
 */
export const ZYGOTE_SOURCE = readFileSync(new URL('../../../../src/sandbox/warm/zygote.py', import.meta.url), 'utf8');
