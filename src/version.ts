import { readFileSync } from 'node:fs';

/** The worker's version, from package.json (reported to the coordinator). */
export const WORKER_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
