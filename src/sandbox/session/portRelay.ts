import { readFileSync } from 'node:fs';

/** portRelay.py's program, read once from the checkout (the compiled module runs from dist/src/sandbox/session/). */
export const PORT_RELAY_SOURCE = readFileSync(new URL('../../../../src/sandbox/session/portRelay.py', import.meta.url), 'utf8');
