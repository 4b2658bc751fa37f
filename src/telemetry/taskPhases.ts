import { metrics } from './metrics.js';

/**
 * Where a process task's time goes, for operators (codegen_task_phase_seconds) and `make bench`'s
 * breakdown: each mark closes the phase that ran since the previous mark.
 *   setup   task start → the sandbox begins (request checks, record on disk, first progress event)
 *   cgroup  the task's control group made
 *   fork    the process started, placed in its group and let go
 *   run     the code running, its output streamed, until it exits
 *   exit    what it left killed, its output drained, its usage read
 *   finish  the result made, recorded and handed to the call
 */
export type TaskPhase = 'setup' | 'cgroup' | 'fork' | 'run' | 'exit' | 'finish';

export class PhaseClock {
  private last = performance.now();

  constructor(private readonly tool: string) {}

  mark(phase: TaskPhase): void {
    const now = performance.now();
    metrics.taskPhaseSeconds.observe({ tool: this.tool, phase }, (now - this.last) / 1000);
    this.last = now;
  }
}
