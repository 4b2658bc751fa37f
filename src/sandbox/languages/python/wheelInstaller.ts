import { readFileSync } from 'node:fs';

/**
 * The driver of PyPA's installer that lays out stored wheels (wheelInstaller.py, which says what
 * it does and how it is run), read once from the checkout: the compiled module runs from
 * dist/src/sandbox/languages/python/.
 */
export const WHEEL_INSTALLER_SOURCE = readFileSync(new URL('../../../../../src/sandbox/languages/python/wheelInstaller.py', import.meta.url), 'utf8');

/**
 * PyPA's installer as Debian's python3-installer places it: pure Python, so any interpreter
 * sessions are based on imports it from here, and under /usr, read-only in every sandbox. Without
 * it (or an interpreter that cannot import it) stored wheels are installed by pip.
 */
export const PYPA_INSTALLER = '/usr/lib/python3/dist-packages/installer';
