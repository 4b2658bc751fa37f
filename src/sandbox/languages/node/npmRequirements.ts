import { errors, quoted } from '../../../errors.js';
import type { PackageInstaller } from '../language.js';
import { requirementLines } from '../requirementLines.js';

/**
 * pkg.install's lines for npm: registry specs only (`name`, `name@version`, `name@range`,
 * `name@tag`, scoped or not). Everything npm would take for something else (a path, a tarball,
 * a URL, a git repository or GitHub shorthand, a `file:`/`npm:`/`github:` spec) is refused:
 * the fetching step runs with the worker's installer powers, and only the configured registry
 * may feed it.
 */

/** A package name as the registry knows it (validate-npm-package-name, upper case allowed for old names). */
const NAME = /^(?:@[A-Za-z0-9~-][A-Za-z0-9._~-]*\/)?[A-Za-z0-9~-][A-Za-z0-9._~-]*$/;
/** What may follow `name@`: a version, a semver range or a dist-tag (no `/` or `:`, so no URL, path or alias). */
const VERSION = /^[A-Za-z0-9.*+^~<>=|\s-]+$/;
/** What npm takes for a tarball file name, whatever else it looks like. */
const TARBALL = /\.(tgz|tar|tar\.gz)$/i;
/** Longest name the registry accepts. */
const MAX_NAME = 214;

/** A spec's package name and what follows its `@` (undefined: none). */
export function splitSpec(spec: string): { name: string; version: string | undefined } {
  const at = spec.indexOf('@', spec.startsWith('@') ? 1 : 0);
  return at === -1 ? { name: spec, version: undefined } : { name: spec.slice(0, at), version: spec.slice(at + 1) };
}

/** Whether a name is one the registry could have (and npm takes for nothing else). */
export function isPackageName(name: string): boolean {
  return name.length <= MAX_NAME && NAME.test(name) && !TARBALL.test(name);
}

/** Whether `spec` names a package of the registry: `name` or `name@version|range|tag`. */
export function isRegistrySpec(spec: string): boolean {
  const { name, version } = splitSpec(spec);
  return isPackageName(name) && (version === undefined || (version.trim() !== '' && VERSION.test(version)));
}

/** Requirement lines: blank lines and `#` comments skipped; npm options and non-registry specs refused. */
export function parseNpmRequirements(text: string): string[] {
  const specs = requirementLines(text);
  for (const spec of specs) {
    if (spec.startsWith('-')) throw errors.invalidArgument(`pkg.install takes package specs only, not npm options: ${quoted(spec)}`);
    if (!isRegistrySpec(spec)) {
      throw errors.invalidArgument(
        `pkg.install installs packages of the registry only (name, name@version, name@range or name@tag), not paths, URLs, git repositories or aliases: ${quoted(spec)}`,
      );
    }
  }
  if (specs.length === 0) throw errors.invalidArgument('pkg.install requirements list no packages');
  return specs;
}

/** npm as pkg.install: its output's stages, and what each requested spec resolved to. */
export const NPM_INSTALLER: PackageInstaller = {
  name: 'npm',
  parse: parseNpmRequirements,
  stages: [
    [/^npm (http|notice|warn)/, 20, 'resolving'],
    [/^(added|changed|removed|up to date)\b/, 70, 'fetched'],
    [/^installed into the environment/, 95, 'installed'],
  ],
  // The lines that say what failed (npm's last error lines are advice and where its log is).
  errorLine: /^npm (?:ERR!|error) (?:code \S+|404 Not Found.*|notarget .*|Error: .*)$/,
  installedNames(requirements, installed) {
    const versions = new Map((installed ?? []).filter((p) => p.requested).map((p) => [p.name, p.version]));
    return requirements.map((spec) => {
      const { name } = splitSpec(spec);
      const version = versions.get(name);
      return version ? `${name}@${version}` : name;
    });
  },
};
