/**
 * Ends the current turn of the event loop so other work (other sessions' calls) runs, then goes on
 * unless `signal` has aborted meanwhile: how long synchronous walks and parses over what a session
 * or the store controls (trees, archive directories) share the worker's one thread.
 */
export async function letOthersRun(signal?: AbortSignal): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  signal?.throwIfAborted();
}
