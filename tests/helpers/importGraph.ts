// The import graph of src/ and the layering it must follow, so the README's picture of the layers
// stays true: a file imports only from its own directory or from a lower layer.
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { sourceFiles } from './codeShape.js';

/** Layers, lowest first: a module may import from a layer below it, or from its own directory. */
export const LAYERS: string[][] = [
  ['errors.ts', 'logger.ts', 'version.ts', 'address.ts', 'limits.ts', 'deferred.ts', 'waitingLine.ts'],
  ['sharedBudget.ts'],
  ['telemetry'],
  ['storage'],
  ['sandbox'],
  ['sessions'],
  ['tools'],
  ['tasks', 'artifacts'],
  ['grpc', 'http', 'coordinator'],
  ['config.ts', 'startupChecks.ts'],
  ['worker.ts'],
  ['main.ts'],
];

/**
 * src/sandbox/'s rooms, lowest first: inside the sandbox layer a file imports only from its own
 * room or a lower one, and every file is in a room.
 */
export const SANDBOX_ROOMS = ['process', 'confine', 'network', 'caches', 'warm', 'languages', 'session', 'host'];

/** Where the languages live: a language's folder is imported only by itself and by the worker, which assembles them. */
const LANGUAGES = 'sandbox/languages/';

/** The client library stands apart: it ships alone (client/), so it imports only itself, the version and gen/. */
export const STANDALONE: Record<string, string[]> = {
  client: ['client', 'version.ts'],
  'cli.ts': ['client', 'version.ts'],
};

export type ImportGraph = Map<string, string[]>;

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g;

/** Every file under `root/src` → the files (relative to src/) it imports, types included. */
export function importGraph(root: string): ImportGraph {
  const src = join(root, 'src');
  const graph: ImportGraph = new Map();
  for (const file of sourceFiles(src)) {
    const text = readFileSync(file, 'utf8');
    const targets = [...text.matchAll(IMPORT)].map((m) => resolve(dirname(file), (m[1] ?? m[2])!.replace(/\.js$/, '.ts')));
    graph.set(
      relative(src, file),
      targets.map((t) => relative(src, t)),
    );
  }
  return graph;
}

/** The unit of layering a file belongs to: its top directory, or the file itself at the top. */
export function moduleOf(file: string): string {
  return file.split('/')[0]!;
}

function layerOf(module: string): number {
  return LAYERS.findIndex((layer) => layer.includes(module));
}

/** Imports against the layering, as `from -> to` strings; empty when the graph follows it. */
export function layeringViolations(graph: ImportGraph): string[] {
  const violations: string[] = [];
  for (const [file, targets] of graph) {
    const from = moduleOf(file);
    for (const target of targets) {
      if (target.startsWith('../gen/')) continue;
      const to = moduleOf(target);
      const standalone = STANDALONE[from];
      const allowed =
        to === from && !from.endsWith('.ts')
          ? true
          : standalone
            ? standalone.includes(to)
            : STANDALONE[to] === undefined && layerOf(from) >= 0 && layerOf(to) >= 0 && layerOf(to) < layerOf(from);
      if (!allowed || !sandboxAllows(file, target)) violations.push(`${file} -> ${target}`);
    }
  }
  return violations;
}

/** The sandbox's own rule for an import (any import that is not from a sandbox file to a sandbox file passes). */
function sandboxAllows(file: string, target: string): boolean {
  const languageOf = (path: string) => (path.startsWith(LANGUAGES) && path.split('/').length > 3 ? path.split('/')[2] : undefined);
  const language = languageOf(target);
  if (language !== undefined && languageOf(file) !== language && file !== 'worker.ts') return false;
  if (moduleOf(file) !== 'sandbox' || moduleOf(target) !== 'sandbox') return true;
  const roomOf = (path: string) => (path.split('/').length > 2 ? SANDBOX_ROOMS.indexOf(path.split('/')[1]!) : -1);
  return roomOf(file) >= 0 && roomOf(target) >= 0 && roomOf(target) <= roomOf(file);
}

/** Import circles between files, each as the files around it. */
export function importCircles(graph: ImportGraph): string[][] {
  const circles: string[][] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string): void => {
    const at = path.indexOf(file);
    if (at >= 0) {
      circles.push(path.slice(at));
      return;
    }
    if (done.has(file)) return;
    path.push(file);
    for (const target of graph.get(file) ?? []) visit(target);
    path.pop();
    done.add(file);
  };
  for (const file of graph.keys()) visit(file);
  return circles;
}
