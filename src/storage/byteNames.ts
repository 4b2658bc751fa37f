import { isUtf8 } from 'node:buffer';

/**
 * Names as Linux has them: any bytes but '/' and NUL, UTF-8 or not. Where the worker carries a
 * session's names as data (checkpoint trees and archives, removals), it holds them as byte
 * strings: one char per byte (latin1), so every name comes back exactly as it was, and '/', '.',
 * NUL and '\' keep their one-byte meaning for checks. They become bytes again only at the
 * filesystem (as Buffer paths) and in an archive. A name decoded as UTF-8 instead (Node's
 * default) loses every byte that is not UTF-8, and the file with it.
 */
export type ByteString = string;

/** The bytes a byte string holds. */
export function bytesOf(name: ByteString): Buffer {
  return Buffer.from(name, 'latin1');
}

/**
 * A byte string as a path argument for the filesystem: the string itself when it is ASCII (its
 * UTF-8 is its bytes), else its bytes. Most names are ASCII, and a walk makes one per entry.
 */
export function pathArg(name: ByteString): string | Buffer {
  // ASCII exactly when its UTF-8 is as long as it is (any char past 0x7f takes two bytes).
  return Buffer.byteLength(name, 'utf8') === name.length ? name : bytesOf(name);
}

/** The byte string of `bytes`. */
export function byteString(bytes: Buffer): ByteString {
  return bytes.toString('latin1');
}

/** The byte string of a text (a path a client or the worker wrote as Unicode). */
export function byteStringOfText(text: string): ByteString {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** What a person reads for a byte string: UTF-8 decoded, bytes that are not UTF-8 as U+FFFD. */
export function textOf(name: ByteString): string {
  return bytesOf(name).toString('utf8');
}

/** Whether a byte string's bytes are UTF-8 (and so can be said as text without loss). */
export function isUtf8Name(name: ByteString): boolean {
  return isUtf8(bytesOf(name));
}
