// The code each compression thread runs (compressionThreads.ts): per message, raw deflate at
// level 1 or raw inflate of at most `size` bytes, answered with the output or the error's
// message under the message's id.
//
// CommonJS: compressionThreads.ts reads this file and starts it with worker_threads' `eval: true`,
// which runs a string as a CommonJS script.

const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
parentPort.on('message', ({ id, op, data, size }) => {
  try {
    const input = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const out = op === 'deflate' ? zlib.deflateRawSync(input, { level: 1 }) : zlib.inflateRawSync(input, { maxOutputLength: size });
    parentPort.postMessage({ id, data: out });
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
