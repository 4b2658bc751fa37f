import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';

/**
 * HMAC-SHA256 signatures for the URLs the worker hands out: whatever the fields say (artifact,
 * session, size, content type, expiry, method) cannot be changed without the signature failing.
 */
export class UrlSigner {
  constructor(private readonly secret: Buffer) {}

  /** The secret from WORKER_URL_SECRET, else one generated once and kept in `file`. */
  static async load(configured: string | undefined, file: string): Promise<UrlSigner> {
    if (configured) return new UrlSigner(Buffer.from(configured, 'utf8'));
    const existing = await readFile(file).catch(() => undefined);
    if (existing && existing.length >= 32) return new UrlSigner(existing);
    const secret = randomBytes(32);
    await writeFile(file, secret, { mode: 0o600, flag: 'w' });
    await chmod(file, 0o600);
    return new UrlSigner(secret);
  }

  /** The fields are encoded as a JSON array: no field can spill into another, whatever it holds. */
  sign(fields: string[]): string {
    return createHmac('sha256', this.secret).update(JSON.stringify(fields)).digest('hex');
  }

  verify(fields: string[], signature: string): boolean {
    // Only sign()'s exact form: a hex decode stops at the first non-hex character, so sig+'zz' would decode as sig.
    if (!SIGNATURE_FORM.test(signature)) return false;
    return timingSafeEqual(Buffer.from(signature, 'hex'), Buffer.from(this.sign(fields), 'hex'));
  }
}

/** What sign() returns: a SHA-256 HMAC in lower-case hex. */
const SIGNATURE_FORM = /^[0-9a-f]{64}$/;
