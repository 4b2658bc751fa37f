import { echo } from './echo.js';
import { fsList } from './fsList.js';
import { fsRead } from './fsRead.js';
import { fsWrite } from './fsWrite.js';
import { pkgInstall } from './pkgInstall.js';
import { runPython } from './runPython.js';
import type { Tool } from './tool.js';

/** Every tool the worker offers, by the name clients call it. */
export const TOOLS: ReadonlyMap<string, Tool> = new Map([echo, fsWrite, fsRead, fsList, runPython, pkgInstall].map((t) => [t.name, t]));
