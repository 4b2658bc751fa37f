import winston from 'winston';

export type Logger = winston.Logger;

/**
 * Structured logs: JSON lines when stdout is not a terminal (what log shippers and our tests
 * read), a compact coloured line when a person watches. Context such as session_id and
 * task_id rides on child loggers.
 */
export function createLogger(level: string): Logger {
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
