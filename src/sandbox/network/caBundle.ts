// WORKER_CA_BUNDLE: the CA an operator's TLS-intercepting proxy signs with, trusted by every
// fetching step (pip, npm, go) and offered to session code that has a network. OpenSSL-based
// clients take one file that replaces the system's (SSL_CERT_FILE): they get the system's CAs
// with the operator's appended; Node adds NODE_EXTRA_CA_CERTS to its own, so it gets the PEM alone.

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Mount } from '../confine/launcher.js';

/** Where the bundles are inside a sandbox. */
const INSIDE = { combined: '/etc/codegen/ca-bundle.pem', extra: '/etc/codegen/extra-ca.pem' };
const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

export class CaBundleError extends Error {
  override name = 'CaBundleError';
}

export interface CaBundle {
  /** What a sandboxed process needs to see them. */
  mounts: Mount[];
  /** The variables that make clients trust them (pip, requests, curl, git, OpenSSL, Go, Node). */
  env: Record<string, string>;
}

/** Checks the operator's PEM and writes the two bundles into `dir` (the worker's scratch). */
export async function prepareCaBundle(pemFile: string, dir: string): Promise<CaBundle> {
  const pem = await readFile(pemFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new CaBundleError(`WORKER_CA_BUNDLE ${pemFile} cannot be read (${err.code ?? err.message})`);
  });
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(pem))
    throw new CaBundleError(`WORKER_CA_BUNDLE ${pemFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  let system = '';
  for (const file of SYSTEM_BUNDLES) {
    system = await readFile(file, 'utf8').catch(() => '');
    if (system) break;
  }
  const combined = join(dir, 'ca-bundle.pem');
  const extra = join(dir, 'extra-ca.pem');
  await writeFile(combined, `${system.trimEnd()}\n${pem.trim()}\n`, { mode: 0o644 });
  await writeFile(extra, `${pem.trim()}\n`, { mode: 0o644 });
  return {
    mounts: [
      { host: combined, inside: INSIDE.combined, writable: false },
      { host: extra, inside: INSIDE.extra, writable: false },
    ],
    env: {
      SSL_CERT_FILE: INSIDE.combined,
      REQUESTS_CA_BUNDLE: INSIDE.combined,
      PIP_CERT: INSIDE.combined,
      CURL_CA_BUNDLE: INSIDE.combined,
      GIT_SSL_CAINFO: INSIDE.combined,
      NODE_EXTRA_CA_CERTS: INSIDE.extra,
      npm_config_cafile: INSIDE.combined,
    },
  };
}
