// The codegen-worker server's entry: reads its configuration, starts the worker (worker.ts) and
// turns whatever stops startup into one clear line and a non-zero exit.
import { setLogger } from '@grpc/grpc-js';
import { ConfigError, HelpRequested, loadConfig, type WorkerConfig } from './config.js';
import { describeThrown, faultOf, messageOf } from './errors.js';
import { createLogger } from './logger.js';
import { LanguageUnavailableError } from './sandbox/languages/languages.js';
import { SandboxUnavailableError } from './sandbox/host/selfChecks.js';
import { UidRangeError } from './sandbox/confine/uidRange.js';
import { StartupRefused } from './startupChecks.js';
import { WORKER_VERSION } from './version.js';
import { startWorker } from './worker.js';

/** The longest startup may take before the worker gives up. */
const STARTUP_LIMIT_SECONDS = 120;

async function main(): Promise<void> {
  if (process.argv.slice(2).includes('--version')) {
    process.stdout.write(`${WORKER_VERSION}\n`);
    process.exit(0);
  }
  let config: WorkerConfig;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.message}\n`);
      process.exit(0);
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`codegen-mcp-worker: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  // grpc-js's own messages (e.g. a bind failure, said again below in terms of its setting) go to the log.
  setLogger({ error: (...args: unknown[]) => logger.debug('grpc-js', { message: args.map(String).join(' ') }) });
  const refuse = (message: string) => {
    logger.error(message);
    process.stderr.write(`codegen-mcp-worker: ${message.split('\n')[0]}\n`);
    process.exit(1);
  };
  // Whatever a broken host does (a hung filesystem, a stuck interpreter), startup ends.
  const watchdog = setTimeout(
    () => refuse(`startup did not finish within ${STARTUP_LIMIT_SECONDS} s; the log says how far it got`),
    STARTUP_LIMIT_SECONDS * 1000,
  );
  watchdog.unref();
  try {
    await startWorker(config, logger);
    clearTimeout(watchdog);
  } catch (err) {
    const known = [LanguageUnavailableError, SandboxUnavailableError, UidRangeError, StartupRefused].some((type) => err instanceof type);
    if (!known) logger.error('cannot start', { error: describeThrown(err) });
    refuse(known ? messageOf(err) : `cannot start (${faultOf(err)}); the log has the details`);
  }
}

await main();
