/**
 * What the warm interpreter (zygote.py) says to the worker, one JSON object per line on its
 * stdout. The zygote runs as the session's uid and imports whatever the session puts on its
 * path (sitecustomize, .pth files): everything it says is untrusted input. Lines are bounded,
 * parsed defensively and checked field by field; anything else is a ZygoteProtocolError.
 */

export type ZygoteEvent =
  | { ev: 'ready' }
  | { ev: 'forked'; id: number; pid: number }
  | { ev: 'ahead'; pid: number }
  | { ev: 'refused'; id: number }
  | { ev: 'went'; id: number }
  | { ev: 'exit'; id: number; code: number | null; signal: number | null; connected: boolean };

export class ZygoteProtocolError extends Error {
  override name = 'ZygoteProtocolError';
}

/** Longest line the zygote may send; its real lines are under 200 bytes. */
export const MAX_ZYGOTE_LINE = 4096;

const isId = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0;
const isCode = (v: unknown): v is number | null => v === null || (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 255);
const isSignal = (v: unknown): v is number | null => v === null || (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 64);

/** One line (without its newline) as an event, or a ZygoteProtocolError saying what is wrong. */
export function parseZygoteEvent(line: string): ZygoteEvent {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ZygoteProtocolError(`not JSON: ${JSON.stringify(line.slice(0, 60))}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ZygoteProtocolError('not a JSON object');
  const event = value as Record<string, unknown>;
  switch (event.ev) {
    case 'ready':
      return { ev: 'ready' };
    case 'forked':
      if (isId(event.id) && isId(event.pid)) return { ev: 'forked', id: event.id, pid: event.pid };
      throw new ZygoteProtocolError('a forked event without a valid id and pid');
    case 'ahead':
      if (isId(event.pid)) return { ev: 'ahead', pid: event.pid };
      throw new ZygoteProtocolError('an ahead event without a valid pid');
    case 'refused':
      if (isId(event.id)) return { ev: 'refused', id: event.id };
      throw new ZygoteProtocolError('a refused event without a valid id');
    case 'went':
      if (isId(event.id)) return { ev: 'went', id: event.id };
      throw new ZygoteProtocolError('a went event without a valid id');
    case 'exit':
      if (
        isId(event.id) &&
        isCode(event.code) &&
        isSignal(event.signal) &&
        typeof event.connected === 'boolean' &&
        (event.code === null) !== (event.signal === null)
      ) {
        return { ev: 'exit', id: event.id, code: event.code, signal: event.signal, connected: event.connected };
      }
      throw new ZygoteProtocolError('an exit event with invalid fields');
    default:
      throw new ZygoteProtocolError(`an unknown event ${typeof event.ev === 'string' ? JSON.stringify(event.ev.slice(0, 30)) : typeof event.ev}`);
  }
}

/**
 * Splits a byte stream into lines, refusing any line longer than MAX_ZYGOTE_LINE (so a zygote
 * cannot make the worker buffer without end).
 */
export class LineSplitter {
  private buffered = '';

  /** The complete lines in `chunk` (with what came before); throws on an overlong line. */
  push(chunk: string): string[] {
    this.buffered += chunk;
    const lines = this.buffered.split('\n');
    this.buffered = lines.pop()!;
    if (this.buffered.length > MAX_ZYGOTE_LINE || lines.some((l) => l.length > MAX_ZYGOTE_LINE))
      throw new ZygoteProtocolError(`a line longer than ${MAX_ZYGOTE_LINE} bytes`);
    return lines;
  }
}
