// The TypeScript examples of the project's markdown (README.md, docs/*.md), so tests can compile
// and run them: documentation that cannot rot unnoticed.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Snippet {
  /** Where it is: `README.md#2` (the second ts block). */
  where: string;
  code: string;
}

/** Every ```ts block of README.md and docs/*.md under `root`. */
export function typescriptSnippets(root: string): Snippet[] {
  const docs = readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md'));
  const files = ['README.md', ...docs.map((name) => `docs/${name}`)];
  return files.flatMap((file) =>
    [...readFileSync(join(root, file), 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((match, i) => ({ where: `${file}#${i + 1}`, code: match[1]! })),
  );
}

/**
 * A snippet as a module of this checkout: the client package's name and the repository-relative
 * `./gen/` imports pointed at `base` (the checkout's root as seen from where the module is put).
 */
export function asCheckoutModule(code: string, base: string): string {
  return code.replaceAll("from 'codegen-mcp-worker-client'", `from '${base}/src/client/index.js'`).replaceAll("from './gen/", `from '${base}/gen/`);
}
