import { readFileSync } from 'node:fs';

/**
 * The version of the package this file was built into, from its package.json (dist/src/version.js
 * → package.json): the worker's (reported to the coordinator, `--version`), or, in the client
 * package (client/), the client's (`codegen-worker --version`).
 */
export const WORKER_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
