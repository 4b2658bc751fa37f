// Relays connections to a unix socket to host:port, run by fakeInternet.ts inside the worker
// namespace so that a test in the host's namespace reaches a server there (the worker's gRPC
// port). Prints one line once it listens; exits when its stdin (its parent's pipe) closes.
//
//   node fakeInternetRelay.js /path/to.sock host port
import { rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const [path, host, port] = process.argv.slice(2);
if (path === undefined || host === undefined || port === undefined) throw new Error('usage: node fakeInternetRelay.js /path/to.sock host port');
rmSync(path, { force: true });
const server = createServer((client) => {
  const upstream = connect({ host, port: Number(port) });
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});
server.listen(path, () => process.stdout.write('listening\n'));
process.stdin.on('close', () => process.exit(0)).resume();
process.on('SIGTERM', () => server.close(() => process.exit(0)));
