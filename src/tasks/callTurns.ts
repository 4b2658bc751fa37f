import { WaitingLine } from '../waitingLine.js';

/**
 * Turns at running a process call, shared between sessions while more than one wants them.
 *
 * A short call's cost is mostly the worker's own (its event loop, cgroup writes, records), which
 * no limit of the session's counts: a session making calls at once, again and again, would take
 * the worker from every other. So while other sessions want turns (hold one, wait for one, or
 * took one lately), a session holds at most `perSession`, or fewer than the least demanding of
 * them asks for: sessions as busy as each other are not held back, and a session alone is never
 * held back at all. A turn ends with its call or after `holdMs`, whichever comes first: long
 * calls do not keep their session's next calls waiting long, and no wait outlasts one.
 */
export interface CallTurnOptions {
  /** Turns one session may hold at once while others want them too. */
  perSession: number;
  /** How long a turn is held at most. */
  holdMs: number;
  /** How long after its last turn a session still counts as wanting them. */
  recentMs: number;
}

/** What the worker uses: measured with the neighbour rows of `make bench`. */
export const CALL_TURNS: CallTurnOptions = { perSession: 1, holdMs: 20, recentMs: 100 };

interface SessionTurns {
  held: number;
  lastTakenAt: number;
  waiting: WaitingLine;
}

/** Turns a session holds or waits for. */
const demand = (turns: SessionTurns) => turns.held + turns.waiting.length;

export class CallTurns {
  private readonly sessions = new Map<string, SessionTurns>();
  private recheck: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: CallTurnOptions = CALL_TURNS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Waits for a turn of `sessionId`'s (until `signal` aborts); resolves the function that ends it. */
  async take(sessionId: string, signal: AbortSignal): Promise<() => void> {
    let turns = this.of(sessionId);
    // Woken and still not free to go, a call keeps its place first in line.
    for (let woken = false; !this.mayTake(sessionId, turns); woken = true) {
      this.scheduleRecheck();
      await turns.waiting.wait(signal, woken);
      turns = this.of(sessionId); // forgotten meanwhile (none held, none waiting): counted again
    }
    signal.throwIfAborted();
    turns.held++;
    turns.lastTakenAt = this.now();
    // The next in line may be free to go too.
    if (turns.waiting.length > 0 && this.mayTake(sessionId, turns)) turns.waiting.wakeFirst();
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      turns.held--;
      this.wake();
    };
    const timer = setTimeout(end, this.options.holdMs);
    timer.unref();
    return end;
  }

  /** Whether a session other than `sessionId` wants turns now (holds, waits for or lately took one). */
  othersWant(sessionId: string): boolean {
    for (const [id, other] of this.sessions) if (id !== sessionId && this.wants(other)) return true;
    return false;
  }

  private of(sessionId: string): SessionTurns {
    let turns = this.sessions.get(sessionId);
    if (!turns) {
      turns = { held: 0, lastTakenAt: -Infinity, waiting: new WaitingLine() };
      this.sessions.set(sessionId, turns);
    }
    return turns;
  }

  private wants(turns: SessionTurns): boolean {
    return demand(turns) > 0 || turns.lastTakenAt > this.now() - this.options.recentMs;
  }

  private mayTake(sessionId: string, turns: SessionTurns): boolean {
    if (turns.held < this.options.perSession) return true;
    let least = Infinity;
    for (const [id, other] of this.sessions) if (id !== sessionId && this.wants(other)) least = Math.min(least, demand(other));
    return turns.held < least;
  }

  /** Lets each session's first waiting call look again (it wakes the next if it may go too); forgets sessions that no longer want turns. */
  private wake(): void {
    for (const [id, turns] of this.sessions) {
      turns.waiting.wakeFirst();
      if (!this.wants(turns)) this.sessions.delete(id);
    }
  }

  /** Others stop wanting turns by time passing, not by an event: look again then, while any call waits. */
  private scheduleRecheck(): void {
    if (this.recheck) return;
    this.recheck = setTimeout(() => {
      this.recheck = undefined;
      this.wake();
    }, this.options.recentMs);
    this.recheck.unref();
  }
}
