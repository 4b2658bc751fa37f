import { createRequire } from 'node:module';

/**
 * A patch of grpc-js (1.14), in this one file, like framedReplies.ts. grpc-js keeps a message's
 * pieces as they arrive and joins them once the last one has (StreamDecoder.write, Buffer.concat):
 * for a 32 MB fs.write, a fresh 32 MB array (page faults) and a copy of it all, in one go on the
 * event loop, while every other session's calls wait. Here a large message's array is made once
 * an eighth of it has come (so a client announcing a large message it does not send makes the
 * worker hold at most 8 times what it sent, untouched), what came so far is copied in, and each
 * later piece is copied in as it comes: the same work, in pieces of at most an HTTP/2 read. The
 * message given on is the same bytes (its 5-byte header, then the message) grpc-js would give.
 * Smaller messages are joined as grpc-js joins them. tests/unit/joinedAsTheyCome.test.ts holds
 * the messages to unpatched grpc-js's for pieces cut anywhere, and checks that the patched class
 * is the one grpc-js's server uses.
 */

/** Messages from this size on are joined as they come. */
export const JOIN_AS_THEY_COME_BYTES = 1024 * 1024;

const NO_DATA = 0;
const READING_SIZE = 1;
const READING_MESSAGE = 2;

interface Decoder {
  maxReadMessageLength: number;
  readState: number;
  readCompressFlag: Buffer;
  readPartialSize: Buffer;
  readSizeRemaining: number;
  readMessageSize: number;
  readPartialMessage: Buffer[];
  readMessageRemaining: number;
  /** The message's array, once made (the patch's own). */
  joined?: Buffer;
  write: (this: Decoder, data: Buffer) => Buffer[];
}

const require = createRequire(import.meta.url);
const streamDecoder = require('@grpc/grpc-js/build/src/stream-decoder') as { StreamDecoder: { prototype: Decoder } };
const original = streamDecoder.StreamDecoder.prototype.write;

let applied = false;

/** Makes grpc-js join large messages as their pieces come. */
export function applyJoinedAsTheyCome(): void {
  if (applied) return;
  applied = true;
  streamDecoder.StreamDecoder.prototype.write = write;
}

/** StreamDecoder.write of grpc-js 1.14.7, but for what READING_MESSAGE does with a large message. */
function write(this: Decoder, data: Buffer): Buffer[] {
  let readHead = 0;
  let toRead: number;
  const result: Buffer[] = [];
  while (readHead < data.length) {
    switch (this.readState) {
      case NO_DATA:
        this.readCompressFlag = data.subarray(readHead, readHead + 1);
        readHead += 1;
        this.readState = READING_SIZE;
        this.readPartialSize.fill(0);
        this.readSizeRemaining = 4;
        this.readMessageSize = 0;
        this.readMessageRemaining = 0;
        this.readPartialMessage = [];
        this.joined = undefined;
        break;
      case READING_SIZE:
        toRead = Math.min(data.length - readHead, this.readSizeRemaining);
        data.copy(this.readPartialSize, 4 - this.readSizeRemaining, readHead, readHead + toRead);
        this.readSizeRemaining -= toRead;
        readHead += toRead;
        if (this.readSizeRemaining === 0) {
          this.readMessageSize = this.readPartialSize.readUInt32BE(0);
          if (this.maxReadMessageLength !== -1 && this.readMessageSize > this.maxReadMessageLength) {
            throw new Error(`Received message larger than max (${this.readMessageSize} vs ${this.maxReadMessageLength})`);
          }
          this.readMessageRemaining = this.readMessageSize;
          if (this.readMessageRemaining > 0) {
            this.readState = READING_MESSAGE;
          } else {
            result.push(Buffer.concat([this.readCompressFlag, this.readPartialSize], 5));
            this.readState = NO_DATA;
          }
        }
        break;
      case READING_MESSAGE: {
        toRead = Math.min(data.length - readHead, this.readMessageRemaining);
        const piece = data.subarray(readHead, readHead + toRead);
        const size = this.readMessageSize;
        if (this.joined) piece.copy(this.joined, 5 + size - this.readMessageRemaining);
        else this.readPartialMessage.push(piece);
        this.readMessageRemaining -= toRead;
        readHead += toRead;
        if (this.readMessageRemaining === 0) {
          result.push(this.joined ?? Buffer.concat([this.readCompressFlag, this.readPartialSize, ...this.readPartialMessage], size + 5));
          this.joined = undefined;
          this.readPartialMessage = [];
          this.readState = NO_DATA;
        } else if (!this.joined && size >= JOIN_AS_THEY_COME_BYTES && (size - this.readMessageRemaining) * 8 >= size) {
          const joined = Buffer.allocUnsafe(size + 5);
          this.readCompressFlag.copy(joined, 0);
          this.readPartialSize.copy(joined, 1);
          let at = 5;
          for (const part of this.readPartialMessage) at += part.copy(joined, at);
          this.readPartialMessage = [];
          this.joined = joined;
        }
        break;
      }
      default:
        throw new Error('Unexpected read state');
    }
  }
  return result;
}

/** grpc-js's own write (for the test), and the class patched. */
export const unpatchedWrite = original;
export const patchedDecoder = streamDecoder.StreamDecoder;
