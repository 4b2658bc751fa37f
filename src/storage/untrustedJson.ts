import { openRegularFileNoFollow, openTrustedDirectory } from './beneath.js';

/**
 * A JSON file below `root` that a less trusted party wrote (a session, or a package installer
 * fed by a registry): reached without following links, read only when at most `maxBytes`, and
 * parsed. Undefined when it is missing, not a regular file, too large or not JSON: the caller
 * still checks the value's shape.
 */
export async function readUntrustedJson(root: string, segments: string[], maxBytes: number): Promise<unknown> {
  const dir = await openTrustedDirectory(root).catch(() => undefined);
  if (!dir) return undefined;
  try {
    const handle = await openRegularFileNoFollow(dir, segments).catch(() => undefined);
    if (!handle) return undefined;
    try {
      if ((await handle.stat()).size > maxBytes) return undefined;
      return JSON.parse(await handle.readFile('utf8')) as unknown;
    } catch {
      return undefined;
    } finally {
      await handle.close();
    }
  } finally {
    await dir.close();
  }
}
