import { errors, quoted } from '../../../errors.js';
import type { InstalledPackage, PackageInstaller } from '../language.js';

/**
 * pkg.install's lines in a Go session: `module@version`, each fetched from WORKER_GOPROXY by
 * the worker's installer. Anything else the go command would take (flags, local paths,
 * `=>` replacements, URLs) is refused: nothing in a line may change where modules come from.
 */

/** The first element of a module path: a lower-case domain-like name with a dot (as Go's module.CheckPath). */
const FIRST = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+';
/** Later elements: Go's path characters, no empty, leading, trailing or doubled dots. */
const ELEMENT = '[A-Za-z0-9_~-]+(?:\\.[A-Za-z0-9_~-]+)*';
/** A semantic version (pseudo-versions are ones), or a prefix of one (`v1`, `v1.2`: its latest), or `latest`. */
const VERSION = 'v(?:0|[1-9]\\d*)(?:\\.(?:0|[1-9]\\d*)(?:\\.(?:0|[1-9]\\d*)(?:-[0-9A-Za-z.-]+)?(?:\\+[0-9A-Za-z.-]+)?)?)?|latest';
const REQUIREMENT = new RegExp(`^(${FIRST}(?:/${ELEMENT})*)@(${VERSION})$`);
/** Longest line taken (module paths are short; this bounds what an error message repeats). */
const MAX_LINE = 400;

/** A parsed `module@version` line. */
export interface ModuleRequirement {
  path: string;
  version: string;
}

/** Why a line is not `module@version`, in the words of what it looks like instead. */
function refusal(line: string): string {
  const what = quoted(line, 200);
  if (line.startsWith('-')) return `pkg.install takes module@version lines only, not go options: ${what}`;
  if (line.includes('=>')) return `pkg.install cannot replace modules (=>), it installs module@version: ${what}`;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(line)) return `pkg.install takes module paths, not URLs: ${what}`;
  if (/^[./~]/.test(line) || line.includes('..')) return `pkg.install takes module paths, not local paths: ${what}`;
  if (!line.includes('@')) return `pkg.install needs a version for each module: module@version (or module@latest), got ${what}`;
  return `not a Go module@version (a module path like example.com/mod, a version like v1.2.3 or latest): ${what}`;
}

/** `module@version` lines: blank lines and `#` comments skipped, anything else refused (INVALID_ARGUMENT). */
export function parseModuleRequirements(text: string): string[] {
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
    .filter((line) => line !== '');
  for (const line of lines) if (line.length > MAX_LINE || !REQUIREMENT.test(line)) throw errors.invalidArgument(refusal(line));
  if (lines.length === 0) throw errors.invalidArgument('pkg.install requirements list no modules');
  return lines;
}

/** A line parseModuleRequirements accepted, split. */
export function splitRequirement(line: string): ModuleRequirement {
  const at = line.lastIndexOf('@');
  return { path: line.slice(0, at), version: line.slice(at + 1) };
}

/** The module of `modules` providing `path` (a module path, or a package path inside one): the longest that is it or a prefix. */
export function moduleOf<T extends { path: string }>(path: string, modules: readonly T[]): T | undefined {
  return modules
    .filter((m) => path === m.path || path.startsWith(`${m.path}/`))
    .reduce<T | undefined>((best, m) => (best && best.path.length >= m.path.length ? best : m), undefined);
}

/** Largest go.mod read back (the session's own, or the fetch step's). */
export const MAX_GO_MOD_BYTES = 1024 * 1024;

const MODULE_PATH = /^[A-Za-z0-9._~+/-]{1,400}$/;
const MODULE_VERSION = /^v[0-9A-Za-z.+-]{1,100}$/;

/** The `require` directives of a go.mod (single and block form), in file order; malformed lines are left out. */
export function goModRequires(text: string): ModuleRequirement[] {
  const found: ModuleRequirement[] = [];
  let inBlock = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\/\/.*$/, '').trim();
    let spec: string | undefined;
    if (inBlock) {
      if (line === ')') inBlock = false;
      else spec = line;
    } else if (/^require\s*\($/.test(line)) inBlock = true;
    else if (line.startsWith('require ')) spec = line.slice('require '.length).trim();
    const [path, version, ...rest] = spec?.split(/\s+/) ?? [];
    if (path && version && rest.length === 0 && MODULE_PATH.test(path) && MODULE_VERSION.test(version)) found.push({ path, version });
  }
  return found;
}

/** The go command as pkg.install: its output's stages, and each requested line as the module@version it became. */
export const GO_INSTALLER: PackageInstaller = {
  name: 'go',
  parse: parseModuleRequirements,
  stages: [
    [/^go: downloading /, 40, 'downloading'],
    [/^go: (added|upgraded|downgraded) /, 90, 'adding'],
  ],
  errorLine: /^(go: (?!(downloading|added|upgraded|downgraded|removed|finding|found) )|SECURITY ERROR|verifying )/,
  installedNames(requirements, installed) {
    if (!installed) return [...requirements];
    const modules = installed.map((p: InstalledPackage) => ({ ...p, path: p.name }));
    const named = requirements.map((line) => {
      const module = moduleOf(splitRequirement(line).path, modules);
      return module ? `${module.name}@${module.version}` : line;
    });
    return [...new Set(named)];
  },
};
