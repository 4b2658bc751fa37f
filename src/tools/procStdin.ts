import { errors } from '../errors.js';
import { parseEncoding, parseFlag } from './arguments.js';
import { decodeStrictBase64 } from './base64.js';
import { defineTool } from './tool.js';

/** Writes `data` to a background process's stdin, and ends its input with `eof`. */
export const procStdin = defineTool({
  name: 'proc.stdin',
  kind: 'instant',
  arguments: { required: ['process_id'], optional: ['data', 'encoding', 'eof'] },
  outputs: ['bytes'],
  parse({ process_id, data, encoding, eof }) {
    const text = data ?? '';
    const bytes = parseEncoding('proc.stdin', encoding) === 'base64' ? decodeStrictBase64(text) : Buffer.from(text, 'utf8');
    if (!bytes) throw errors.invalidArgument('proc.stdin data is not valid base64');
    return { processId: process_id, bytes, eof: parseFlag('proc.stdin', 'eof', eof) };
  },
  run: async ({ processId, bytes, eof }, { session }) => {
    await session.sandbox.background.write(processId, bytes, eof);
    return { ok: true, exitCode: 0, outputs: { bytes: String(bytes.length) } };
  },
});
