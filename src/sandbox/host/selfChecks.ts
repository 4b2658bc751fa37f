import { mkdir, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../logger.js';
import { removeTree } from '../../storage/removeTree.js';
import { sessionLayout, type SessionDirectories } from '../../storage/workspaceStore.js';
import type { Language } from '../languages/language.js';
import type { SandboxMode } from '../session/sandboxContext.js';
import type { SessionSandbox } from '../session/sessionSandbox.js';

/** The sandbox does not work on this host (or for one language); the message says why and what to do. */
export class SandboxUnavailableError extends Error {
  override name = 'SandboxUnavailableError';
}

export interface SelfCheckOptions {
  /** The languages the worker offers; the first is the default. */
  languages: readonly Language[];
  mode: SandboxMode;
  /** Where a check's throwaway session lives. */
  scratch: string;
  logger: Logger;
  /** Makes a session's sandbox with no limits and no network (SandboxHost.createSession). */
  makeSandbox(id: string, dirs: SessionDirectories, language: Language): Promise<SessionSandbox>;
}

/**
 * Proof that the sandbox runs each language's code (and, isolating, hides the host), in a
 * throwaway session. The default language's is run before any session is made; the others' (a
 * go build takes a second) once the worker serves (checkOthers), or at the first session of one
 * (ready), so they never slow start-up or the adoption of sessions.
 */
export class SelfChecks {
  /** The checks of the languages but the default, each run once: each one's sessions wait for theirs. */
  private readonly later = new Map<Language, Promise<Error | undefined>>();

  constructor(private readonly options: SelfCheckOptions) {}

  /** Runs the default language's check; throws SandboxUnavailableError when it fails. */
  async checkDefault(): Promise<void> {
    const [first] = this.options.languages;
    if (!first) throw new SandboxUnavailableError('the worker offers no session language');
    await this.run(first);
  }

  /** Starts the checks of the languages but the default. */
  checkOthers(): void {
    for (const language of this.options.languages.slice(1)) void this.laterCheck(language);
  }

  /** Resolves once `language`'s check passed (the default's passed at start-up); throws its failure. */
  async ready(language: Language): Promise<void> {
    if (language === this.options.languages[0]) return;
    const failed = await this.laterCheck(language);
    if (failed) throw failed;
  }

  /** Resolves once every check started has ended. */
  async settled(): Promise<void> {
    await Promise.all(this.later.values());
  }

  private laterCheck(language: Language): Promise<Error | undefined> {
    let check = this.later.get(language);
    if (!check) {
      check = this.run(language).then(
        () => undefined,
        (err: Error) => {
          this.options.logger.error(`${language.name} sessions are unavailable: the sandbox self-check failed`, { error: err.message });
          return err;
        },
      );
      this.later.set(language, check);
    }
    return check;
  }

  private async run(language: Language): Promise<void> {
    const { mode } = this.options;
    const scratch = await mkdtemp(join(this.options.scratch, 'self-check-'));
    try {
      const dirs = sessionLayout(scratch);
      await mkdir(dirs.disk);
      const sandbox = await this.options.makeSandbox(`self-check-${language.name}`, dirs, language);
      try {
        const check = language.selfCheck;
        const result = await sandbox.runCode(check.code, { signal: AbortSignal.timeout(30_000), maxCaptureBytes: 4096, onOutput: () => undefined }, {});
        const expected = mode === 'bwrap' ? check.isolated : check.plain;
        if (result.exitCode !== 0 || !result.stdout.text.startsWith(expected)) {
          throw new SandboxUnavailableError(
            `the ${mode} sandbox does not work on this host (${language.name}: exit ${result.exitCode}: ${(result.stderr.text || result.stdout.text).trim()}). ` +
              (mode === 'bwrap' ? 'Install bubblewrap (`make run` does) or, knowing that code then runs unisolated, set WORKER_SANDBOX=none.' : ''),
          );
        }
      } finally {
        await sandbox.dispose();
      }
    } finally {
      await removeTree(scratch);
    }
  }
}
