// Reads src/ the way a reviewer would: every function with its length and whether a comment
// above it explains itself. Used by the code-shape test and the closing-note measurements.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

export interface FunctionShape {
  file: string;
  name: string;
  line: number;
  lines: number;
  commented: boolean;
}

export function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

function nameOf(node: ts.Node, source: ts.SourceFile): string {
  const named = node as ts.Node & { name?: ts.Node };
  if (named.name) return named.name.getText(source);
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) {
    return parent.name.getText(source);
  }
  return '(anonymous)';
}

/** The statement a function belongs to, whose leading comment documents it. */
function documentedNode(node: ts.Node): ts.Node {
  let current: ts.Node = node;
  while (
    current.parent &&
    (ts.isVariableDeclaration(current.parent) ||
      ts.isVariableDeclarationList(current.parent) ||
      ts.isVariableStatement(current.parent) ||
      ts.isPropertyAssignment(current.parent) ||
      ts.isPropertyDeclaration(current.parent))
  ) {
    current = current.parent;
  }
  return current;
}

export function functionShapes(root: string, dir = 'src'): FunctionShape[] {
  const shapes: FunctionShape[] = [];
  for (const path of sourceFiles(join(root, dir))) {
    const text = readFileSync(path, 'utf8');
    const source = ts.createSourceFile(path, text, ts.ScriptTarget.ES2022, true);
    const visit = (node: ts.Node): void => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body) {
        const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
        const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
        const documented = documentedNode(node);
        const comments = ts.getLeadingCommentRanges(text, documented.getFullStart()) ?? [];
        shapes.push({
          file: relative(root, path),
          name: nameOf(node, source),
          line: start + 1,
          lines: end - start + 1,
          commented: comments.length > 0,
        });
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return shapes;
}
