// The code each compression thread runs (compressionThreads.ts), per message, answered under the
// message's id:
//   {op: "deflate", data}          -> {data}: raw deflate at level 1
//   {op: "inflate", data, size}    -> {data}: raw inflate of at most `size` bytes
//   {op: "extract", source, files} -> {} or {error, code?, format?}: each file's entry read from
//       the archive open as `source` (its local header at `localOffset`, then `compressedSize`
//       bytes), inflated when `method` is 8, checked against `size` and `crc`, written whole
//       to the open descriptor `fd`, given `mtime` (futimes seconds) when there is one. Every
//       descriptor of the message is closed when the answer is posted, written or not; the
//       first failure stops the rest (`format`: the archive is not what it says).
//
// CommonJS: compressionThreads.ts reads this file and starts it with worker_threads' `eval: true`,
// which runs a string as a CommonJS script.

const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const zlib = require('node:zlib');

class FormatError extends Error {}

function readFully(fd, buffer, position) {
  for (let filled = 0; filled < buffer.length;) {
    const read = fs.readSync(fd, buffer, filled, buffer.length - filled, position + filled);
    if (read === 0) throw new FormatError('the archive ends early');
    filled += read;
  }
}

function extractOne(source, file) {
  if (file.method !== 0 && file.method !== 8) throw new FormatError(`compression method ${file.method} is not supported`);
  const header = Buffer.allocUnsafe(30);
  readFully(source, header, file.localOffset);
  if (header.readUInt32LE(0) !== 0x04034b50) throw new FormatError(`no local header for ${file.name}`);
  const stored = Buffer.allocUnsafe(file.compressedSize);
  readFully(source, stored, file.localOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28));
  let bytes = stored;
  if (file.method === 8) {
    try {
      bytes = zlib.inflateRawSync(stored, { maxOutputLength: Math.max(1, file.size) });
    } catch (err) {
      throw new FormatError(`entry ${file.name} does not inflate (${err.message})`);
    }
  }
  if (bytes.length !== file.size || zlib.crc32(bytes) !== file.crc) throw new FormatError(`entry ${file.name} fails its CRC or size`);
  for (let done = 0; done < bytes.length;) done += fs.writeSync(file.fd, bytes, done, bytes.length - done, done);
  if (file.mtime !== undefined) fs.futimesSync(file.fd, file.mtime, file.mtime);
}

function extract({ source, files }) {
  try {
    for (const file of files) extractOne(source, file);
    return {};
  } catch (err) {
    return { error: String((err && err.message) || err), code: err && err.code, format: err instanceof FormatError };
  } finally {
    for (const file of files) {
      try {
        fs.closeSync(file.fd);
      } catch {
        // closed already: never by anyone else (the worker hands a descriptor over whole)
      }
    }
  }
}

parentPort.on('message', ({ id, op, data, size, source, files }) => {
  if (op === 'extract') return parentPort.postMessage({ id, ...extract({ source, files }) });
  try {
    const input = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const out = op === 'deflate' ? zlib.deflateRawSync(input, { level: 1 }) : zlib.inflateRawSync(input, { maxOutputLength: size });
    parentPort.postMessage({ id, data: out });
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
