import winston from 'winston';

export type Logger = winston.Logger;

/**
 * Structured logs: JSON lines when stdout is not a terminal (what log shippers and our tests
 * read), a compact coloured line when a person watches. Context such as session_id and
 * task_id rides on child loggers.
 */
export function createLogger(level: string): Logger {
  // A log reader that goes away (stdout a closed pipe: EPIPE) must not take the worker with it:
  // an unhandled stream error ended the process, its sessions' tasks cut off and their disks
  // left mounted. Lines written after are lost; the worker goes on.
  for (const stream of [process.stdout, process.stderr]) if (stream.listenerCount('error') === 0) stream.on('error', () => undefined);
  const human = winston.format.combine(
    winston.format.colorize(),
    winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
    winston.format.printf(({ level: lvl, message, timestamp, ...meta }) => {
      const context = Object.keys(meta).length > 0 ? ` ${JSON.stringify(meta)}` : '';
      return `${String(timestamp)} ${lvl} ${String(message)}${context}`;
    }),
  );
  const machine = winston.format.combine(winston.format.timestamp(), winston.format.json());
  return winston.createLogger({
    level,
    format: process.stdout.isTTY ? human : machine,
    transports: [new winston.transports.Console()],
  });
}
