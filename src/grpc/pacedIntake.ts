import { createRequire } from 'node:module';
import { BulkIntake, LARGE_REQUEST_BYTES, type Admission, type InteractiveCall } from './bulkIntake.js';

/**
 * A patch of grpc-js (1.14), in this one file, like joinedAsTheyCome.ts: each call's request is
 * taken in, and its large replies sent, as bulkIntake.ts decides. After grpc-js has handled a
 * piece of a request (handleDataFrame), the call's decoder says whether a large message is being
 * read: if it may not be taken in yet (too many at once) or not so fast (the pace), the call's
 * HTTP/2 stream is paused, so Node stops giving the client window to send more on that stream
 * (other streams of the same connection go on), and resumed when it may. A large reply waits for
 * the pace before it is written (paceReplies). Calls whose requests are small are the interactive
 * ones the pace protects. tests/unit/pacedIntake.test.ts drives grpc-js's own server through it;
 * tests/security/neighbour-flood.test.ts measures the effect.
 */

const READING_SIZE = 1;
const RESOURCE_EXHAUSTED = 8;
const NO_ERROR = 0;
const READING_MESSAGE = 2;

type WriteCallback = (error?: Error | null) => void;

interface Stream {
  pause(): void;
  resume(): void;
  once(event: 'close', listener: () => void): void;
  close(code: number): void;
  write(chunk: Buffer, callback?: WriteCallback): boolean;
  end(...args: unknown[]): unknown;
  readonly destroyed: boolean;
}

interface IntakeState {
  kind?: 'interactive' | 'bulk';
  interactive?: InteractiveCall;
  /** The large message being read, once admitted or queued. */
  admission?: Admission;
  waitingAdmission: boolean;
  paced?: NodeJS.Timeout;
  closed: boolean;
}

const INTAKE = Symbol('intake');

interface Call {
  stream: Stream;
  cancelled: boolean;
  sendStatus(status: { code: number; details: string }): void;
  decoder: { readState: number; readMessageSize: number };
  [INTAKE]?: IntakeState;
}

const require = createRequire(import.meta.url);
const interceptors = require('@grpc/grpc-js/build/src/server-interceptors') as {
  BaseServerInterceptingCall: { prototype: { handleDataFrame: (this: Call, data: Buffer) => void } };
};
const original = interceptors.BaseServerInterceptingCall.prototype.handleDataFrame;

let intake: BulkIntake | undefined;

/** Makes grpc-js take in requests as `bulk` decides (the last one given, if applied again). */
export function applyPacedIntake(bulk: BulkIntake): void {
  const first = intake === undefined;
  intake = bulk;
  if (first) interceptors.BaseServerInterceptingCall.prototype.handleDataFrame = handleDataFrame;
}

function handleDataFrame(this: Call, data: Buffer): void {
  original.call(this, data);
  const bulk = intake!;
  const state = (this[INTAKE] ??= watch(this));
  if (state.closed) return;
  if (this.cancelled) return close(state); // grpc-js drains a cancelled call's stream: let it
  const decoder = this.decoder;
  const large = decoder.readState === READING_MESSAGE && decoder.readMessageSize >= LARGE_REQUEST_BYTES;
  if (state.kind === undefined && decoder.readState !== READING_SIZE) {
    state.kind = large ? 'bulk' : 'interactive';
    if (!large) state.interactive = bulk.interactiveCall();
  }
  if (!large) {
    // Read whole (or never large): its bytes are the call's now, counted by the payload budgets.
    state.admission?.release();
    state.admission = undefined;
    return;
  }
  if (!state.admission) {
    state.admission = bulk.admit(
      decoder.readMessageSize,
      () => {
        state.waitingAdmission = false;
        resumeIfFree(this, state);
      },
      () => {
        this.sendStatus({ code: RESOURCE_EXHAUSTED, details: 'the request stopped arriving while other large requests waited their turn' });
        // The answer is whole; RST_STREAM NO_ERROR asks the client to stop sending (RFC 9113
        // 8.1), and its turn goes to the next at once.
        this.stream.close(NO_ERROR);
        close(state);
      },
    );
    if (!state.admission.granted) {
      state.waitingAdmission = true;
      this.stream.pause();
      return;
    }
  }
  state.admission.progress();
  const wait = bulk.took(data.length);
  if (wait > 0 && !state.paced) {
    this.stream.pause();
    state.paced = setTimeout(() => {
      state.paced = undefined;
      state.admission?.progress(); // the pace held it, not its client
      resumeIfFree(this, state);
    }, wait);
  }
}

function watch(call: Call): IntakeState {
  const state: IntakeState = { waitingAdmission: false, closed: false };
  call.stream.once('close', () => close(state));
  paceReplies(call.stream, state);
  return state;
}

/**
 * The call's large replies (grpc-js writes each message, framed, in one write) are sent as the
 * pace allows; what the call writes after one, its end (trailers) included, waits behind it. A
 * call sending a large reply no longer counts as interactive.
 */
function paceReplies(stream: Stream, state: IntakeState): void {
  const write = stream.write.bind(stream);
  const end = stream.end.bind(stream);
  let behind: Promise<void> | undefined;
  const later = (step: () => void, wait = 0) => {
    const previous = behind ?? Promise.resolve();
    const next = previous.then(() => (wait > 0 ? new Promise<void>((resolve) => setTimeout(resolve, wait)) : undefined)).then(step);
    behind = next;
    void next.finally(() => {
      if (behind === next) behind = undefined;
    });
  };
  stream.write = (chunk: Buffer, callback?: WriteCallback) => {
    let wait = 0;
    if (chunk.length >= LARGE_REQUEST_BYTES) {
      state.interactive?.turnedBulk();
      wait = intake!.took(chunk.length);
    }
    if (!behind && wait <= 0) return write(chunk, callback);
    later(() => {
      if (stream.destroyed) callback?.(new Error('the call ended before its reply was sent'));
      else write(chunk, callback);
    }, wait);
    return true;
  };
  stream.end = (...args: unknown[]) => (behind ? later(() => void end(...args)) : end(...args));
}

function resumeIfFree(call: Call, state: IntakeState): void {
  if (state.closed || state.waitingAdmission || state.paced || call.stream.destroyed) return;
  if (call.decoder.readState === READING_MESSAGE) call.stream.resume();
}

/** The call ended (or was cancelled): what it held goes back. */
function close(state: IntakeState): void {
  state.closed = true;
  state.admission?.release();
  state.admission = undefined;
  clearTimeout(state.paced);
  state.paced = undefined;
  state.interactive?.end();
}
