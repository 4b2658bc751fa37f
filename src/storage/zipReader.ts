import { read } from 'node:fs';
import { pipeline, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { crc32, createInflateRaw } from 'node:zlib';
import { inflateAtMost } from './compressionThreads.js';
import { letOthersRun } from './letOthersRun.js';

/**
 * Reading a zip by its central directory, from an open descriptor with positional reads: the
 * entries' names, sizes and attributes, then any entry's bytes (inflated, length and CRC-32
 * checked). Zip64 sizes, offsets and counts are understood. Anything malformed is a ZipFormatError.
 */

export class ZipFormatError extends Error {
  override name = 'ZipFormatError';
}

export interface ZipDirectoryEntry {
  /** The name's bytes exactly, as a byte string (storage/byteNames.ts), whatever its UTF-8 flag says. */
  name: string;
  /** From the NTFS extra field, when the entry has one (ours do): nanoseconds since 1970, to 100 ns. */
  mtimeNs: bigint | undefined;
  method: number;
  crc: number;
  size: number;
  compressedSize: number;
  localOffset: number;
  /** Unix mode and type in the high 16 bits (for archives made on Unix). */
  externalAttributes: number;
}

const METHOD_STORE = 0;
const METHOD_DEFLATE = 8;
const MAX32 = 0xffffffff;
const MAX16 = 0xffff;
/** What a central directory may hold, checked before any of it is read: a damaged or hostile store must not cost the worker seconds of event loop and gigabytes. */
export interface ZipDirectoryLimits {
  entries: number;
  bytes: number;
}
/** Entries parsed between two turns of the event loop. */
const PARSE_SLICE = 4096;
/** Entries up to this size are read and inflated in one piece; larger ones in chunks of it. */
export const WHOLE_ENTRY_BYTES = 8 << 20;

const readAsync = promisify(read);

async function readAt(fd: number, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await readAsync(fd, buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new ZipFormatError('the archive ends early');
    filled += bytesRead;
  }
  return buffer;
}

/** Where a zip's central directory is and how many entries it holds, from its end records. */
export interface ZipEnd {
  count: number;
  directorySize: number;
  directoryOffset: number;
}

/**
 * The end records of the zip open as `fd` (`fileSize` bytes long): what its central directory
 * holds, checked against `limits` before it is read.
 */
export async function readZipEnd(fd: number, fileSize: number, limits: ZipDirectoryLimits): Promise<ZipEnd> {
  const end = await endRecords(fd, fileSize);
  if (end.count > limits.entries) throw new ZipFormatError(`${end.count} entries, more than ${limits.entries}`);
  if (end.directorySize > limits.bytes) throw new ZipFormatError(`a central directory of ${end.directorySize} bytes, more than ${limits.bytes}`);
  if (end.directoryOffset + end.directorySize > fileSize) throw new ZipFormatError('a central directory out of bounds');
  return end;
}

async function endRecords(fd: number, fileSize: number): Promise<ZipEnd> {
  const tailLength = Math.min(fileSize, 22 + MAX16);
  if (tailLength < 22) throw new ZipFormatError('too short for a zip');
  const tail = await readAt(fd, tailLength, fileSize - tailLength);
  let end = -1;
  for (let i = tail.length - 22; i >= 0; i--)
    if (tail.readUInt32LE(i) === 0x06054b50) {
      end = i;
      break;
    }
  if (end < 0) throw new ZipFormatError('no end of central directory');
  const count = tail.readUInt16LE(end + 10);
  const directorySize = tail.readUInt32LE(end + 12);
  const directoryOffset = tail.readUInt32LE(end + 16);
  if (count !== MAX16 && directorySize !== MAX32 && directoryOffset !== MAX32) return { count, directorySize, directoryOffset };
  if (end < 20 || tail.readUInt32LE(end - 20) !== 0x07064b50) throw new ZipFormatError('no zip64 end locator');
  const record = await readAt(fd, 56, safeNumber(tail.readBigUInt64LE(end - 12)));
  if (record.readUInt32LE(0) !== 0x06064b50) throw new ZipFormatError('no zip64 end record');
  return {
    count: safeNumber(record.readBigUInt64LE(32)),
    directorySize: safeNumber(record.readBigUInt64LE(40)),
    directoryOffset: safeNumber(record.readBigUInt64LE(48)),
  };
}

/**
 * Every entry of the zip open as `fd` (`fileSize` bytes long), in the order of its central
 * directory: its size and count checked against `limits` before it is read, parsed in slices
 * with other work let run between them, given up when `signal` aborts.
 */
export async function readZipDirectory(fd: number, fileSize: number, limits: ZipDirectoryLimits, signal?: AbortSignal): Promise<ZipDirectoryEntry[]> {
  const { count, directorySize, directoryOffset } = await readZipEnd(fd, fileSize, limits);
  const directory = await readAt(fd, directorySize, directoryOffset);
  const entries: ZipDirectoryEntry[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (i % PARSE_SLICE === PARSE_SLICE - 1) {
      await letOthersRun(signal);
    }
    if (at + 46 > directory.length || directory.readUInt32LE(at) !== 0x02014b50) throw new ZipFormatError('a damaged central directory');
    const nameLength = directory.readUInt16LE(at + 28);
    const extraLength = directory.readUInt16LE(at + 30);
    const commentLength = directory.readUInt16LE(at + 32);
    if (at + 46 + nameLength + extraLength + commentLength > directory.length) throw new ZipFormatError('a damaged central directory');
    const entry: ZipDirectoryEntry = {
      name: directory.toString('latin1', at + 46, at + 46 + nameLength),
      mtimeNs: undefined,
      method: directory.readUInt16LE(at + 10),
      crc: directory.readUInt32LE(at + 16),
      compressedSize: directory.readUInt32LE(at + 20),
      size: directory.readUInt32LE(at + 24),
      externalAttributes: directory.readUInt32LE(at + 38),
      localOffset: directory.readUInt32LE(at + 42),
    };
    applyExtraFields(entry, directory.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength));
    entries.push(entry);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

function safeNumber(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipFormatError('a size beyond reason');
  return Number(value);
}

/** 1970 in NTFS time: 100 ns units since 1601. */
const FILETIME_EPOCH_100NS = 116_444_736_000_000_000n;

/**
 * The extra fields read: zip64 (0x0001) gives, in order, each of size, compressed size and offset
 * whose 32-bit field is 0xFFFFFFFF; NTFS (0x000a) the modification time.
 */
function applyExtraFields(entry: ZipDirectoryEntry, extra: Buffer): void {
  for (let at = 0; at + 4 <= extra.length;) {
    const tag = extra.readUInt16LE(at);
    const length = extra.readUInt16LE(at + 2);
    if (tag === 0x000a && length >= 32 && at + 4 + length <= extra.length && extra.readUInt16LE(at + 8) === 1 && extra.readUInt16LE(at + 10) >= 24) {
      entry.mtimeNs = (extra.readBigUInt64LE(at + 12) - FILETIME_EPOCH_100NS) * 100n;
    } else if (tag === 0x0001) {
      let field = at + 4;
      const next = () => {
        if (field + 8 > at + 4 + length || field + 8 > extra.length) throw new ZipFormatError('a short zip64 field');
        const value = safeNumber(extra.readBigUInt64LE(field));
        field += 8;
        return value;
      };
      if (entry.size === MAX32) entry.size = next();
      if (entry.compressedSize === MAX32) entry.compressedSize = next();
      if (entry.localOffset === MAX32) entry.localOffset = next();
    }
    at += 4 + length;
  }
}

/** Where an entry's bytes start: past its local header, whose name and extra lengths may differ from the central directory's. */
async function dataOffset(fd: number, entry: ZipDirectoryEntry): Promise<number> {
  const header = await readAt(fd, 30, entry.localOffset);
  if (header.readUInt32LE(0) !== 0x04034b50) throw new ZipFormatError(`no local header for ${JSON.stringify(entry.name.slice(0, 200))}`);
  return entry.localOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
}

function checkMethod(entry: ZipDirectoryEntry): void {
  if (entry.method !== METHOD_STORE && entry.method !== METHOD_DEFLATE) throw new ZipFormatError(`compression method ${entry.method} is not supported`);
}

function checked(entry: ZipDirectoryEntry, bytes: Buffer): Buffer {
  if (bytes.length !== entry.size || crc32(bytes) !== entry.crc)
    throw new ZipFormatError(`entry ${JSON.stringify(entry.name.slice(0, 200))} fails its CRC or size`);
  return bytes;
}

/** An entry's bytes, whole (for entries up to WHOLE_ENTRY_BYTES; larger: zipEntryChunks). */
export async function readZipEntry(fd: number, entry: ZipDirectoryEntry): Promise<Buffer> {
  checkMethod(entry);
  if (entry.size > WHOLE_ENTRY_BYTES || entry.compressedSize > WHOLE_ENTRY_BYTES) throw new ZipFormatError('an entry too large to read whole');
  const stored = await readAt(fd, entry.compressedSize, await dataOffset(fd, entry));
  if (entry.method === METHOD_STORE) return checked(entry, stored);
  const inflated = await inflateAtMost(stored, entry.size).catch((err: Error) => {
    throw new ZipFormatError(`entry ${JSON.stringify(entry.name.slice(0, 200))} does not inflate (${err.message})`);
  });
  return checked(entry, inflated);
}

/** An entry's bytes in chunks, inflated as they are read; its length and CRC are checked at the end. */
export async function* zipEntryChunks(fd: number, entry: ZipDirectoryEntry): AsyncGenerator<Buffer> {
  checkMethod(entry);
  let position = await dataOffset(fd, entry);
  const end = position + entry.compressedSize;
  const inflater = entry.method === METHOD_DEFLATE ? createInflateRaw() : undefined;
  let crc = 0;
  let size = 0;
  const take = (chunk: Buffer) => {
    crc = crc32(chunk, crc);
    size += chunk.length;
    if (size > entry.size) throw new ZipFormatError(`entry ${JSON.stringify(entry.name.slice(0, 200))} is longer than it says`);
    return chunk;
  };
  const stored = async function* () {
    for (; position < end;) {
      const chunk = await readAt(fd, Math.min(WHOLE_ENTRY_BYTES, end - position), position);
      position += chunk.length;
      yield chunk;
    }
  };
  try {
    const chunks: AsyncIterable<Buffer> = inflater ? pipeline(Readable.from(stored()), inflater, () => undefined) : stored();
    for await (const chunk of chunks) yield take(chunk);
    if (size !== entry.size || crc !== entry.crc) throw new ZipFormatError(`entry ${JSON.stringify(entry.name.slice(0, 200))} fails its CRC or size`);
  } finally {
    inflater?.destroy();
  }
}
