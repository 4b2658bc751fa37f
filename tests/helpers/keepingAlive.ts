/** Keeps the event loop alive while `body` awaits timers the code under test unrefs (as a worker's are). */
export async function keepingAlive(body: () => Promise<void>): Promise<void> {
  const alive = setInterval(() => undefined, 60_000);
  try {
    await body();
  } finally {
    clearInterval(alive);
  }
}
