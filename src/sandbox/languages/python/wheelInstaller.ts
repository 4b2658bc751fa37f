import { readFileSync } from 'node:fs';

/**
 * The stdlib wheel installer (wheelInstaller.py, which says what it does and how it is run),
 * read once from the checkout: the compiled module runs from dist/src/sandbox/languages/python/.
 */
export const WHEEL_INSTALLER_SOURCE = readFileSync(new URL('../../../../../src/sandbox/languages/python/wheelInstaller.py', import.meta.url), 'utf8');
