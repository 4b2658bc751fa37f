import { errors } from '../errors.js';
import { TreeResolver } from './beneath.js';

/** Longest path a client may give (PATH_MAX), and longest name in it (NAME_MAX), in bytes. */
export const MAX_PATH_BYTES = 4096;
export const MAX_NAME_BYTES = 255;

/** Where the workspace is as the session's code sees it: absolute links into it stay inside. */
export const WORKSPACE_INSIDE = '/workspace';

/**
 * Checks a client's workspace-relative path and splits it into segments, or refuses it with
 * INVALID_ARGUMENT: absolute paths, `..` segments, NUL bytes. `""` and `"."` name the root (no
 * segments). Where the segments lead (links the session made) is found by openWorkspace's
 * resolver, race-free.
 */
export function workspaceSegments(path: string): string[] {
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) throw errors.invalidPath(path, `it is longer than ${MAX_PATH_BYTES} bytes`);
  if (path.includes('\0')) throw errors.invalidPath(path, 'it contains a NUL byte');
  if (path.startsWith('/')) throw errors.invalidPath(path, 'absolute paths are not allowed; give a path relative to the workspace root');
  const segments = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw errors.invalidPath(path, "'..' segments are not allowed");
  if (segments.some((s) => Buffer.byteLength(s, 'utf8') > MAX_NAME_BYTES))
    throw errors.invalidPath(path, `a name in it is longer than ${MAX_NAME_BYTES} bytes`);
  return segments;
}

/**
 * A resolver for paths in a session's workspace (host path `root`): links are followed only
 * while they stay inside, whether relative or absolute into `/workspace` (or, unsandboxed, the
 * host path itself). The caller closes it.
 */
export function openWorkspace(root: string): Promise<TreeResolver> {
  return TreeResolver.open(root, [WORKSPACE_INSIDE, root]);
}

/** Runs `work` with a resolver of the workspace, closed afterwards. */
export async function inWorkspace<T>(root: string, work: (tree: TreeResolver) => Promise<T>): Promise<T> {
  const tree = await openWorkspace(root);
  try {
    return await work(tree);
  } finally {
    await tree.close();
  }
}
