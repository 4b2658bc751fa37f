/** Mean seconds per task phase from the worker's /metrics (codegen_task_phase_seconds), for one tool. */
export async function phaseMeans(httpPort: number, tool: string): Promise<Map<string, { sum: number; count: number }>> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const phases = new Map<string, { sum: number; count: number }>();
  const line = /^codegen_task_phase_seconds_(sum|count)\{([^}]*)\} (\S+)$/gm;
  for (const [, kind, labels = '', value] of text.matchAll(line)) {
    const phase = /phase="([^"]+)"/.exec(labels)?.[1];
    if (!labels.includes(`tool="${tool}"`) || phase === undefined) continue;
    const entry = phases.get(phase) ?? { sum: 0, count: 0 };
    entry[kind as 'sum' | 'count'] = Number(value);
    phases.set(phase, entry);
  }
  return phases;
}

/** The phases' mean milliseconds between two readings (before, after). */
export function phaseBreakdown(
  before: Map<string, { sum: number; count: number }>,
  after: Map<string, { sum: number; count: number }>,
): { phase: string; ms: number }[] {
  const order = ['setup', 'cgroup', 'fork', 'run', 'exit', 'finish'];
  return order
    .filter((p) => after.has(p))
    .map((phase) => {
      const a = after.get(phase)!;
      const b = before.get(phase) ?? { sum: 0, count: 0 };
      const count = a.count - b.count;
      return { phase, ms: count > 0 ? ((a.sum - b.sum) / count) * 1000 : 0 };
    });
}
