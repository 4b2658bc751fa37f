import { readSmallFileNoFollow } from './beneath.js';

/**
 * A JSON file below `root` that a less trusted party wrote (a session, or a package installer
 * fed by a registry): reached without following links, read only when at most `maxBytes`, and
 * parsed. Undefined when it is missing, not a regular file, too large or not JSON: the caller
 * still checks the value's shape.
 */
export async function readUntrustedJson(root: string, segments: string[], maxBytes: number): Promise<unknown> {
  const text = await readSmallFileNoFollow(root, segments, maxBytes).catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
