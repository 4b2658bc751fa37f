import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CaBundleError, prepareCaBundle } from '../../src/sandbox/network/caBundle.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';

test("WORKER_CA_BUNDLE: the operator's PEM after the system's for OpenSSL clients, alone for Node's", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ca-'));
  await writeFile(join(dir, 'operator.pem'), PEM);
  const bundle = await prepareCaBundle(join(dir, 'operator.pem'), dir);
  const combined = await readFile(join(dir, 'ca-bundle.pem'), 'utf8');
  assert.ok(combined.endsWith(PEM) && combined.length >= PEM.length);
  assert.equal(await readFile(join(dir, 'extra-ca.pem'), 'utf8'), PEM);
  assert.equal(bundle.env.SSL_CERT_FILE, '/etc/codegen/ca-bundle.pem');
  assert.equal(bundle.env.PIP_CERT, '/etc/codegen/ca-bundle.pem');
  assert.equal(bundle.env.NODE_EXTRA_CA_CERTS, '/etc/codegen/extra-ca.pem');
  assert.deepEqual(
    bundle.mounts.map((m) => [m.inside, 'writable' in m && m.writable]),
    [
      ['/etc/codegen/ca-bundle.pem', false],
      ['/etc/codegen/extra-ca.pem', false],
    ],
  );
});

test('a missing or certificate-less WORKER_CA_BUNDLE is refused, naming it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ca-'));
  await writeFile(join(dir, 'empty.pem'), 'not a certificate');
  await assert.rejects(
    prepareCaBundle(join(dir, 'missing.pem'), dir),
    (err: unknown) => err instanceof CaBundleError && /cannot be read \(ENOENT\)/.test((err as Error).message),
  );
  await assert.rejects(
    prepareCaBundle(join(dir, 'empty.pem'), dir),
    (err: unknown) => err instanceof CaBundleError && /holds no PEM certificate/.test((err as Error).message),
  );
});
