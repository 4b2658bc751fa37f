import { closeSync, openSync, readdirSync, writeSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A session's task journal: what changed in its tasks since its record was last written, as
 * lines appended to `tasks.<generation>.log` beside the record. A task that starts a process
 * must be on disk before its code runs; rewriting the whole record for it (its history of a
 * hundred tasks, a rename that starts ext4's writeback) cost about a millisecond of every call,
 * where a line appended costs a few µs. Like the record's task bookkeeping, lines are written
 * atomically enough (one small write) but not fsynced: they outlive the worker, not the host.
 *
 * Generations tie the journal to the record. Each record written starts a new generation and
 * names it (SessionRecord.journal): it holds everything appended before, and the files of
 * earlier generations are removed once it has landed. A reader applies the lines of the
 * record's generation and later ones, in order. A record that never landed (a stop, a full
 * disk) leaves the older record and every file it still needs.
 */
export class TaskJournal {
  private fd: number | undefined;
  private generation: number | undefined;
  /** Generations before the current one whose files may still exist. */
  private readonly older = new Set<number>();
  /** Lines this run wrote whole to the current generation. */
  private appended = 0;

  /** `directory`: where the session's record is (asked at each use: a spare's directory is renamed). */
  constructor(private readonly directory: () => string) {}

  /**
   * Appends `value` as a line of the current generation; throws what the system call threw, or
   * if it took only part of the line (a full disk). Each line starts with its newline, so one cut
   * short ends where the next begins and only itself is lost.
   */
  append(value: unknown): void {
    this.fd ??= openSync(this.file(this.current()), 'a', 0o600);
    const line = Buffer.from(`\n${JSON.stringify(value)}`);
    const written = writeSync(this.fd, line);
    if (written !== line.length) throw new Error(`the task journal took ${written} of a line's ${line.length} bytes`);
    this.appended++;
  }

  /** Lines written whole since the current generation began (in this run): what a record written now folds in. */
  get lines(): number {
    return this.appended;
  }

  /**
   * A restarted worker's journal of a session whose record names `generation`: lines go to it or
   * a later one (after every file an earlier run left too), never to one the record passes over.
   */
  resumeAt(generation: number): void {
    if (this.current() < generation) {
      this.closeFile();
      if (this.appended > 0) this.older.add(this.generation!);
      this.appended = 0;
      this.generation = generation;
    }
  }

  /**
   * Lines appended from now on go to a new generation; its number, for the record being written
   * now. Where no line was written whole since the current one began, it goes on instead: the
   * record holds everything before it (a line cut short is left out wherever it is read), and a
   * full disk failing every line and every record must not leave a new file at each attempt.
   */
  nextGeneration(): number {
    const previous = this.current();
    if (this.appended === 0) return previous;
    this.closeFile();
    this.older.add(previous);
    this.appended = 0;
    this.generation = previous + 1;
    return this.generation;
  }

  /** A record naming `generation` has landed: the files of the generations before it go. */
  async settled(generation: number): Promise<void> {
    for (const old of [...this.older]) {
      if (old >= generation) continue;
      this.older.delete(old);
      await rm(this.file(old), { force: true });
    }
  }

  close(): void {
    this.closeFile();
  }

  private closeFile(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private current(): number {
    if (this.generation === undefined) {
      // A restarted worker goes on after the generations an earlier run left.
      let names: string[] = [];
      try {
        names = readdirSync(this.directory());
      } catch {
        // no directory yet: no generations either
      }
      const found = generationsIn(names);
      for (const old of found) this.older.add(old);
      this.generation = Math.max(0, ...found) + 1;
    }
    return this.generation;
  }

  private file(generation: number): string {
    return join(this.directory(), journalName(generation));
  }
}

const journalName = (generation: number) => `tasks.${generation}.log`;

function generationsIn(names: string[]): number[] {
  return names.flatMap((name) => {
    const match = /^tasks\.(\d{1,15})\.log$/.exec(name);
    return match ? [Number(match[1])] : [];
  });
}

/**
 * The lines of the journal in `directory` from generation `from` on, in the order they were
 * appended, parsed. A line cut short (a stop mid-write) or not JSON is left out.
 */
export async function readTaskJournal(directory: string, from: number): Promise<unknown[]> {
  const generations = generationsIn(await readdir(directory).catch(() => [] as string[]))
    .filter((g) => g >= from)
    .sort((a, b) => a - b);
  const lines: unknown[] = [];
  for (const generation of generations) {
    const text = await readFile(join(directory, journalName(generation)), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        lines.push(JSON.parse(line));
      } catch {
        // cut short
      }
    }
  }
  return lines;
}
