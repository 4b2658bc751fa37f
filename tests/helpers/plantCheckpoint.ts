import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Puts a crafted archive in a worker's local checkpoint store (`dir`) under a record that matches it, as if checkpointed (after `parent`, when given). */
export function plantCheckpoint(dir: string, id: string, zip: Buffer, parent = ''): void {
  writeFileSync(join(dir, `${id}.zip`), zip);
  const record = {
    checkpointId: id,
    sessionId: 'session-x',
    createdAtMs: Date.now(),
    checksumSha256: createHash('sha256').update(zip).digest('hex'),
    installedPackages: [],
    modifiedFiles: [],
    workspaceId: 'evil',
    userId: '',
    config: { language: 'python', limits: { maxMemoryMb: 0, maxCpuPercent: 0, maxDiskMb: 0, timeoutSeconds: 0 }, env: {} },
    parentCheckpointId: parent,
    sizeBytes: zip.length,
    storageUrl: '',
  };
  writeFileSync(join(dir, `${id}.json`), JSON.stringify(record));
}

/**
 * A zip of `count` empty files (`workspace/f<i>`, or as `nameOf` names them), stored, laid out
 * directly (no library makes hundreds of thousands of entries in reasonable time); with
 * `claimedCount`, its end record says that many entries instead (zip64 when over 65,535).
 */
export function zipOfEmptyFiles(count: number, claimedCount = count, nameOf = (i: number) => `workspace/f${i}`): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const name = Buffer.from(nameOf(i));
    const local = Buffer.alloc(30 + name.length);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(name.length, 26);
    name.copy(local, 30);
    const central = Buffer.alloc(46 + name.length);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    name.copy(central, 46);
    locals.push(local);
    centrals.push(central);
    offset += local.length;
  }
  const directory = Buffer.concat(centrals);
  const zip64 = claimedCount >= 0xffff;
  const tail = Buffer.alloc((zip64 ? 76 : 0) + 22);
  let at = 0;
  if (zip64) {
    tail.writeUInt32LE(0x06064b50, 0);
    tail.writeBigUInt64LE(44n, 4);
    tail.writeUInt16LE(45, 12);
    tail.writeUInt16LE(45, 14);
    tail.writeBigUInt64LE(BigInt(claimedCount), 24);
    tail.writeBigUInt64LE(BigInt(claimedCount), 32);
    tail.writeBigUInt64LE(BigInt(directory.length), 40);
    tail.writeBigUInt64LE(BigInt(offset), 48);
    tail.writeUInt32LE(0x07064b50, 56);
    tail.writeBigUInt64LE(BigInt(offset + directory.length), 64);
    tail.writeUInt32LE(1, 72);
    at = 76;
  }
  tail.writeUInt32LE(0x06054b50, at);
  tail.writeUInt16LE(Math.min(claimedCount, 0xffff), at + 8);
  tail.writeUInt16LE(Math.min(claimedCount, 0xffff), at + 10);
  tail.writeUInt32LE(directory.length, at + 12);
  tail.writeUInt32LE(offset, at + 16);
  return Buffer.concat([...locals, directory, tail]);
}
