import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

/**
 * A zip file written front to back to an open file, hashed (sha256) as it is written. Entries
 * come already compressed (or stored), with their CRC-32, so the caller can prepare several at
 * once and this only lays out bytes: local header and data, then the central directory. Zip64
 * records appear only where a size, an offset or the entry count needs them, and for entries
 * streamed with a data descriptor (their size is not known up front).
 */

export const METHOD_STORE = 0;
export const METHOD_DEFLATE = 8;

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const MSDOS_DIRECTORY = 0x10;
const UTF8_NAMES = 0x800;
const DATA_DESCRIPTOR = 0x08;
const UNIX = 3;
const MAX32 = 0xffffffff;
const MAX16 = 0xffff;
/** The longest name an entry can have (its length is a 16-bit field). */
export const MAX_NAME_BYTES = MAX16;
/** The NTFS extra field (0x000a): the modification time exactly, in 100 ns units since 1601. */
const NTFS_EXTRA_BYTES = 36;
const FILETIME_EPOCH_100NS = 116_444_736_000_000_000n;
/** Output gathered before one write: fewer, larger writes. */
const FLUSH_BYTES = 1 << 20;

export interface ZipEntryHeader {
  /**
   * The name in the archive, a byte string (storage/byteNames.ts): its bytes exactly, flagged as
   * UTF-8 only when they are; a directory's ends with '/'. At most MAX_NAME_BYTES.
   */
  name: string;
  kind: 'file' | 'directory' | 'symlink';
  mode: number;
  mtimeMs: number;
  /** The modification time exactly, when known: the NTFS field keeps it to 100 ns (else from mtimeMs). */
  mtimeNs?: bigint | undefined;
  method: number;
}

export interface ZipEntry extends ZipEntryHeader {
  crc: number;
  size: number;
  /** The entry's bytes as stored (compressed with `method`). */
  data: Buffer;
}

interface CentralRecord extends ZipEntryHeader {
  crc: number;
  size: number;
  compressedSize: number;
  offset: number;
  streamed: boolean;
}

export class ZipWriter {
  private readonly hash = createHash('sha256');
  private readonly central: CentralRecord[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;
  private streaming: CentralRecord | undefined;

  constructor(private readonly out: FileHandle) {}

  /** Bytes of the archive so far. */
  get size(): number {
    return this.written + this.pendingBytes;
  }

  async add(entry: ZipEntry): Promise<void> {
    const record: CentralRecord = { ...entry, compressedSize: entry.data.length, offset: this.size, streamed: false };
    this.central.push(record);
    await this.emit(localHeader(record, nameBytes(record)));
    await this.emit(entry.data);
  }

  /** Starts an entry whose bytes follow through write() and whose sizes end() gives. */
  async begin(header: ZipEntryHeader): Promise<void> {
    this.streaming = { ...header, crc: 0, size: 0, compressedSize: 0, offset: this.size, streamed: true };
    await this.emit(localHeader(this.streaming, nameBytes(this.streaming)));
  }

  async write(data: Buffer): Promise<void> {
    this.streaming!.compressedSize += data.length;
    await this.emit(data);
  }

  async end(crc: number, size: number): Promise<void> {
    const record = this.streaming!;
    this.streaming = undefined;
    Object.assign(record, { crc, size });
    this.central.push(record);
    const descriptor = Buffer.alloc(24);
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc >>> 0, 4);
    descriptor.writeBigUInt64LE(BigInt(record.compressedSize), 8);
    descriptor.writeBigUInt64LE(BigInt(size), 16);
    await this.emit(descriptor);
  }

  /** Writes the central directory and the end records; returns the archive's sha256 and size. */
  async finish(): Promise<{ sha256: string; size: number }> {
    const start = this.size;
    for (const record of this.central) await this.emit(centralHeader(record));
    const end = this.size;
    const count = this.central.length;
    if (count >= MAX16 || start >= MAX32 || end - start >= MAX32) {
      const record = Buffer.alloc(56 + 20);
      record.writeUInt32LE(0x06064b50, 0);
      record.writeBigUInt64LE(44n, 4);
      record.writeUInt16LE((UNIX << 8) | 45, 12);
      record.writeUInt16LE(45, 14);
      record.writeBigUInt64LE(BigInt(count), 24);
      record.writeBigUInt64LE(BigInt(count), 32);
      record.writeBigUInt64LE(BigInt(end - start), 40);
      record.writeBigUInt64LE(BigInt(start), 48);
      record.writeUInt32LE(0x07064b50, 56); // the locator
      record.writeBigUInt64LE(BigInt(end), 64);
      record.writeUInt32LE(1, 72);
      await this.emit(record);
    }
    const tail = Buffer.alloc(22);
    tail.writeUInt32LE(0x06054b50, 0);
    tail.writeUInt16LE(Math.min(count, MAX16), 8);
    tail.writeUInt16LE(Math.min(count, MAX16), 10);
    tail.writeUInt32LE(Math.min(end - start, MAX32), 12);
    tail.writeUInt32LE(Math.min(start, MAX32), 16);
    await this.emit(tail);
    await this.flush();
    return { sha256: this.hash.digest('hex'), size: this.written };
  }

  private async emit(bytes: Buffer): Promise<void> {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    const chunk = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.hash.update(chunk);
    for (let done = 0; done < chunk.length;) done += (await this.out.write(chunk, done, chunk.length - done)).bytesWritten;
    this.written += chunk.length;
  }
}

/** Whether the central directory needs the zip64 extra for this entry (and its header fields say 0xFFFFFFFF). */
const needsZip64 = (r: CentralRecord) => r.streamed || r.size >= MAX32 || r.compressedSize >= MAX32 || r.offset >= MAX32;

/** The DOS date and time (1980 to 2107, two-second steps); outside those years the nearest end (the NTFS field has the time exactly). */
function dosDateTime(mtimeMs: number): { date: number; time: number } {
  const d = new Date(mtimeMs);
  if (Number.isNaN(d.getTime()) || d.getFullYear() < 1980) return { date: (1 << 5) | 1, time: 0 };
  if (d.getFullYear() > 2107) return { date: (127 << 9) | (12 << 5) | 31, time: (23 << 11) | (59 << 5) | 29 };
  return {
    date: ((d.getFullYear() - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
  };
}

function nameBytes(r: ZipEntryHeader): Buffer {
  const name = Buffer.from(r.name, 'latin1');
  if (name.length > MAX_NAME_BYTES) throw new RangeError(`a zip entry name of ${name.length} bytes`);
  return name;
}

function flagsOf(r: CentralRecord, name: Buffer): number {
  return (isUtf8(name) ? UTF8_NAMES : 0) | (r.streamed ? DATA_DESCRIPTOR : 0);
}

function localHeader(r: CentralRecord, name: Buffer): Buffer {
  // A streamed entry's sizes come in its data descriptor; its zip64 extra says they are 64-bit.
  const extra = r.streamed ? 20 : 0;
  const header = Buffer.alloc(30 + name.length + extra);
  const { date, time } = dosDateTime(r.mtimeMs);
  header.writeUInt32LE(0x04034b50, 0);
  header.writeUInt16LE(r.streamed ? 45 : 20, 4);
  header.writeUInt16LE(flagsOf(r, name), 6);
  header.writeUInt16LE(r.method, 8);
  header.writeUInt16LE(time, 10);
  header.writeUInt16LE(date, 12);
  header.writeUInt32LE(r.streamed ? 0 : r.crc >>> 0, 14);
  header.writeUInt32LE(r.streamed ? MAX32 : r.compressedSize, 18);
  header.writeUInt32LE(r.streamed ? MAX32 : r.size, 22);
  header.writeUInt16LE(name.length, 26);
  header.writeUInt16LE(extra, 28);
  name.copy(header, 30);
  if (r.streamed) {
    header.writeUInt16LE(0x0001, 30 + name.length);
    header.writeUInt16LE(16, 32 + name.length); // both sizes zero here, as the format asks
  }
  return header;
}

function centralHeader(r: CentralRecord): Buffer {
  const name = nameBytes(r);
  const zip64 = needsZip64(r);
  const extra = (zip64 ? 28 : 0) + NTFS_EXTRA_BYTES;
  const header = Buffer.alloc(46 + name.length + extra);
  const { date, time } = dosDateTime(r.mtimeMs);
  const type = r.kind === 'directory' ? S_IFDIR : r.kind === 'symlink' ? S_IFLNK : S_IFREG;
  header.writeUInt32LE(0x02014b50, 0);
  header.writeUInt16LE((UNIX << 8) | (zip64 ? 45 : 20), 4);
  header.writeUInt16LE(zip64 ? 45 : 20, 6);
  header.writeUInt16LE(flagsOf(r, name), 8);
  header.writeUInt16LE(r.method, 10);
  header.writeUInt16LE(time, 12);
  header.writeUInt16LE(date, 14);
  header.writeUInt32LE(r.crc >>> 0, 16);
  header.writeUInt32LE(zip64 ? MAX32 : r.compressedSize, 20);
  header.writeUInt32LE(zip64 ? MAX32 : r.size, 24);
  header.writeUInt16LE(name.length, 28);
  header.writeUInt16LE(extra, 30);
  header.writeUInt32LE((((type | (r.mode & 0o7777)) << 16) | (r.kind === 'directory' ? MSDOS_DIRECTORY : 0)) >>> 0, 38);
  header.writeUInt32LE(zip64 ? MAX32 : r.offset, 42);
  name.copy(header, 46);
  let at = 46 + name.length;
  if (zip64) {
    header.writeUInt16LE(0x0001, at);
    header.writeUInt16LE(24, at + 2);
    header.writeBigUInt64LE(BigInt(r.size), at + 4);
    header.writeBigUInt64LE(BigInt(r.compressedSize), at + 12);
    header.writeBigUInt64LE(BigInt(r.offset), at + 20);
    at += 28;
  }
  // Rounded down (before 1970 too), so a restore rounding down to the microsecond finds the same one.
  const hundreds = r.mtimeNs === undefined ? BigInt(Math.floor(r.mtimeMs * 10_000)) : r.mtimeNs >= 0n ? r.mtimeNs / 100n : -((-r.mtimeNs + 99n) / 100n);
  const since1601 = hundreds + FILETIME_EPOCH_100NS;
  const filetime = since1601 < 0n ? 0n : since1601;
  header.writeUInt16LE(0x000a, at);
  header.writeUInt16LE(32, at + 2);
  header.writeUInt16LE(0x0001, at + 8); // attribute 1: the three times
  header.writeUInt16LE(24, at + 10);
  for (const offset of [12, 20, 28]) header.writeBigUInt64LE(filetime, at + offset); // mtime, atime, ctime
  return header;
}
