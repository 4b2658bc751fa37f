import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate authority made with openssl for a test, and certificates it signs. */
export interface TestCa {
  dir: string;
  /** PEM file of the CA's certificate. */
  caFile: string;
  ca: Buffer;
  /**
   * A server or client certificate and its key, written to files named `name`. A server's covers
   * `hosts` (names and IP addresses, as subject alternative names): 127.0.0.1 and localhost unless given.
   */
  issue(name: string, options?: { client?: boolean; hosts?: string[] }): { certFile: string; keyFile: string; cert: Buffer; key: Buffer };
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

export function makeCa(label: string): TestCa {
  const dir = mkdtempSync(join(tmpdir(), `codegen-ca-${label}-`));
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      `/CN=test CA ${label}`,
    ],
    dir,
  );
  let serial = 1;
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem')),
    issue(name, options = {}) {
      const hosts = (options.hosts ?? ['127.0.0.1', 'localhost']).map((host) => (isIP(host) ? `IP:${host}` : `DNS:${host}`));
      const ext = options.client ? 'extendedKeyUsage=clientAuth' : `subjectAltName=${hosts.join(',')}\nextendedKeyUsage=serverAuth`;
      writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
      openssl(
        ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${name}.csr`,
          '-CA',
          'ca.pem',
          '-CAkey',
          'ca.key',
          '-set_serial',
          String(serial++ * 1000 + Math.floor(Math.random() * 999)),
          '-days',
          '2',
          '-out',
          `${name}.pem`,
          '-extfile',
          `${name}.ext`,
        ],
        dir,
      );
      return {
        certFile: join(dir, `${name}.pem`),
        keyFile: join(dir, `${name}.key`),
        cert: readFileSync(join(dir, `${name}.pem`)),
        key: readFileSync(join(dir, `${name}.key`)),
      };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
