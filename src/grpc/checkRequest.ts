import { errors, quoted } from '../errors.js';

/**
 * The bounds of what a client may send, checked before anything is done with a request: every
 * string and map of the wire has one, so an error message can always quote what it refuses
 * and nothing unbounded reaches the domain. (Payloads — code, file contents — are bounded by
 * WORKER_MAX_MESSAGE_MB; session env by sessions/sessionConfig.ts; paths by
 * storage/workspacePath.ts.)
 */
export const REQUEST_LIMITS = {
  /** session_id, task_id, checkpoint_id, artifact_id. */
  idChars: 128,
  /** workspace_id, user_id, artifact_name, artifact_type, language. */
  nameChars: 256,
  toolNameChars: 64,
  /** TaskRequest.arguments: entries and name length. */
  arguments: 32,
  argumentNameChars: 64,
  /** ArtifactMetadata.metadata. */
  metadataEntries: 64,
  metadataKeyChars: 128,
  metadataValueBytes: 4096,
  metadataTotalBytes: 64 * 1024,
  contentTypeChars: 255,
} as const;

/** Marks a request whose bytes did not decode (see tolerantDefinition). */
const UNDECODABLE = Symbol('undecodable');

/** A stand-in for a request whose bytes did not decode, carrying why. */
export function undecodable(err: unknown): object {
  return { [UNDECODABLE]: (err as Error)?.message ?? String(err) };
}

type FieldKind = 'id' | 'name' | 'toolName';
const LIMIT_OF: Record<FieldKind, number> = { id: REQUEST_LIMITS.idChars, name: REQUEST_LIMITS.nameChars, toolName: REQUEST_LIMITS.toolNameChars };

/**
 * Refuses an undecodable request, then every named string field longer than its kind allows,
 * with INVALID_ARGUMENT naming the field and the limit; returns the request.
 */
export function checkRequest<T extends object>(request: T, fields: Partial<Record<keyof T & string, FieldKind>>): T {
  const why = (request as Record<symbol, unknown>)[UNDECODABLE];
  if (why !== undefined) throw errors.invalidArgument(`the request does not decode (${quoted(typeof why === 'string' ? why : 'malformed', 120)})`);
  for (const [field, kind] of Object.entries(fields) as [string, FieldKind][]) {
    const value = (request as Record<string, unknown>)[field];
    // The field's proto name only for a message: this runs on every call.
    if (typeof value === 'string' && value.length > LIMIT_OF[kind]) checkLength(snake(field), value, LIMIT_OF[kind]);
  }
  return request;
}

export function checkLength(field: string, value: string, max: number): void {
  if (value.length > max) throw errors.invalidArgument(`${field} is ${value.length} characters long; at most ${max} are allowed (${quoted(value, 40)})`);
}

/** A map of the wire: at most `entries` entries, keys of at most `keyChars`, values and total bounded in bytes. */
export function checkMap(
  field: string,
  map: Record<string, string>,
  limits: { entries: number; keyChars: number; valueBytes: number; totalBytes: number },
): void {
  const entries = Object.entries(map);
  if (entries.length > limits.entries) throw errors.invalidArgument(`${field} has ${entries.length} entries; at most ${limits.entries} are allowed`);
  let total = 0;
  for (const [key, value] of entries) {
    checkLength(`a key of ${field}`, key, limits.keyChars);
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > limits.valueBytes) throw errors.invalidArgument(`${field}[${quoted(key, 40)}] is ${bytes} bytes; at most ${limits.valueBytes} are allowed`);
    total += key.length + bytes;
  }
  if (total > limits.totalBytes) throw errors.invalidArgument(`${field} holds ${total} bytes in all; at most ${limits.totalBytes} are allowed`);
}

/** sessionId → session_id, as the protos name it. */
function snake(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
