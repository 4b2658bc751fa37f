// The code the file-writing thread runs (fileWriteThread.ts): per message, a file written
// atomically (its text into a temporary beside it, fsynced when durable, renamed over it),
// answered under the message's id with nothing, or the error's message and code (the temporary
// removed).
//
// CommonJS: fileWriteThread.ts reads this file and starts it with worker_threads' `eval: true`,
// which runs a string as a CommonJS script.

const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
parentPort.on('message', ({ id, file, temporary, text, durable }) => {
  try {
    // Not exclusive: a worker killed between this open and its rename leaves the temporary, and
    // a restart with the same pid (a container's pid 1) names its writes the same way again.
    const fd = fs.openSync(temporary, 'w', 0o600);
    try {
      fs.writeFileSync(fd, text);
      if (durable) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temporary, file);
    parentPort.postMessage({ id });
  } catch (err) {
    try {
      fs.rmSync(temporary, { force: true });
    } catch {
      // its error is the one to answer with
    }
    parentPort.postMessage({ id, error: String((err && err.message) || err), code: err && err.code });
  }
});
