import { errors, quoted } from '../../../errors.js';
import type { PackageInstaller } from '../language.js';
import { requirementLines } from '../requirementLines.js';

/**
 * pkg.install's requirement lines, and which of them name a package of the index. Only those
 * are fetched by the worker's own installer (shared cache, network); the rest (local paths,
 * `name @ url`, VCS URLs) are code the session controls, built by the session's own pip.
 */

const NAME = '[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?';
const EXTRAS = `\\[\\s*(?:${NAME}(?:\\s*,\\s*${NAME})*)?\\s*\\]`;
const CLAUSE = '(?:===|==|!=|<=|>=|~=|<|>)\\s*[A-Za-z0-9.*+!_-]+';
const VERSIONS = `${CLAUSE}(?:\\s*,\\s*${CLAUSE})*`;
const MARKER = `;[A-Za-z0-9_.'"<>=!~(),\\s-]*`;
/** PEP 508 `name [extras] [versions] [; marker]`, without a URL. */
const INDEX_REQUIREMENT = new RegExp(`^${NAME}\\s*(?:${EXTRAS})?\\s*(?:${VERSIONS}|\\(\\s*${VERSIONS}\\s*\\))?\\s*(?:${MARKER})?$`);

/** Requirement lines: blank lines and `#` comments skipped; pip options refused. */
export function parseRequirements(text: string): string[] {
  const requirements = requirementLines(text);
  for (const line of requirements) {
    if (line.startsWith('-')) throw errors.invalidArgument(`pkg.install takes requirement specifiers only, not pip options: ${quoted(line)}`);
  }
  if (requirements.length === 0) throw errors.invalidArgument('pkg.install requirements list no packages');
  return requirements;
}

/** What pip takes for a file name rather than a project name. */
const ARCHIVE = /\.(whl|zip|tar|tgz|tbz|txz|tlz|tar\.(gz|bz2|xz|lz|lzma))$/i;

/** Whether a requirement names a package of the index (not a path, an archive or a URL). */
export function isIndexRequirement(requirement: string): boolean {
  return INDEX_REQUIREMENT.test(requirement) && !ARCHIVE.test(requirement.split(/[\s;[(<>=!~]/)[0]!); // split gives a piece at least
}

/** pip as pkg.install: its output's stages, and what each requirement resolved to. */
export const PIP_INSTALLER: PackageInstaller = {
  name: 'pip',
  parse: parseRequirements,
  stages: [
    [/^Collecting /, 10, 'resolving'],
    [/^\s*Downloading /, 40, 'downloading'],
    [/^Installing collected packages/, 70, 'installing'],
    [/^Successfully installed/, 95, 'installed'],
  ],
  errorLine: /^ERROR/,
  // pip's report for what it installed now, the requirement's own name for what was already there.
  installedNames(requirements, installed) {
    const requestedNow = (installed ?? []).filter((item) => item.requested).map((item) => item.name);
    const seen = new Set(requestedNow.map(canonicalName));
    const alreadyThere = requirements
      .map((req) => /^[A-Za-z0-9][A-Za-z0-9._-]*/.exec(req)?.[0])
      .filter((name): name is string => name !== undefined && !seen.has(canonicalName(name)));
    return [...requestedNow, ...alreadyThere];
  },
};

/** PEP 503 normalised project name. */
export function canonicalName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}
