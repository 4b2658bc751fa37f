import { echo } from './echo.js';
import { fsList } from './fsList.js';
import { fsRead } from './fsRead.js';
import { fsWrite } from './fsWrite.js';
import { pkgInstall } from './pkgInstall.js';
import { runNode } from './runNode.js';
import { runGo } from './runGo.js';
import { runPython } from './runPython.js';
import { runShell } from './runShell.js';
import { portUrl } from './portUrl.js';
import { procList } from './procList.js';
import { procResize } from './procResize.js';
import { procOutput } from './procOutput.js';
import { procSignal } from './procSignal.js';
import { procStdin } from './procStdin.js';
import type { Tool } from './tool.js';

/** The tools of every session, its language's runner put after the fs tools. */
const FILES: readonly Tool[] = [echo, fsWrite, fsRead, fsList];
const COMMANDS: readonly Tool[] = [runShell, pkgInstall, procList, procOutput, procStdin, procSignal, procResize, portUrl];
const COMMON: readonly Tool[] = [...FILES, ...COMMANDS];

/** Each language's own tool: the one that runs its code. */
const RUNNERS: Readonly<Record<string, Tool>> = { python: runPython, node: runNode, go: runGo };

const BY_LANGUAGE = new Map(Object.entries(RUNNERS).map(([language, runner]) => [language, new Map([...FILES, runner, ...COMMANDS].map((t) => [t.name, t]))]));

/** The tools a session of `language` offers, by the name clients call them. */
export function toolsFor(language: string): ReadonlyMap<string, Tool> {
  return BY_LANGUAGE.get(language) ?? new Map(COMMON.map((t) => [t.name, t]));
}

/** Every tool sessions of `languages` offer, each named once. */
export function toolNames(languages: readonly string[]): string[] {
  return [...new Set(languages.flatMap((l) => [...toolsFor(l).keys()]))];
}

/** The languages whose sessions have the tool `name` (none: no session has it, or every one does). */
export function languagesOfTool(name: string): string[] {
  return Object.entries(RUNNERS)
    .filter(([, runner]) => runner.name === name)
    .map(([language]) => language);
}

/** Every tool of every language's sessions, each once (docs/api.md's Tools tables list them all). */
export function everyTool(): Tool[] {
  return [...new Map(Object.keys(RUNNERS).flatMap((language) => [...toolsFor(language)])).values()];
}
