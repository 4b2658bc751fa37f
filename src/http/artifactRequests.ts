import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { UrlSigner } from '../storage/urlSigner.js';
import type { DiskBudget, Reservation } from '../storage/diskBudget.js';
import { WorkerError } from '../errors.js';
import { acceptBody, answerTurn, reply, type Route } from './httpServer.js';
import { ARTIFACT_ID, downloadFields, uploadFields, type LocalArtifactStore, type UploadGrant } from '../storage/artifactStore.js';

/**
 * Artifacts on the worker's HTTP endpoint: one PUT per signed upload URL, streamed to disk, and
 * signed GETs of recorded artifacts. A bad or expired signature is 403, a body over the signed
 * size 413, an unknown path 404; in none of those cases is anything stored.
 */
export function artifactRoutes(store: LocalArtifactStore, signer: UrlSigner, diskBudget?: DiskBudget): Route {
  const handle = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const artifactId = /^\/artifacts\/([^/]+)$/.exec(url.pathname)?.[1];
    if (!artifactId || !ARTIFACT_ID.test(artifactId)) return reply(res, 404, 'no such path');
    const param = (name: string) => url.searchParams.get(name) ?? '';
    const expires = Number(param('expires'));

    if (req.method === 'PUT') {
      const grant: UploadGrant = { artifactId, sessionId: param('session'), maxBytes: Number(param('size')), contentType: param('type'), expiresAtMs: expires };
      if (!signer.verify(uploadFields(grant), param('signature')))
        return reply(res, 403, 'bad signature: this URL was not issued by this worker, or was changed');
      if (!(expires > Date.now())) return reply(res, 403, 'expired: ask for a new upload URL');
      if (grant.contentType && (req.headers['content-type'] ?? '') !== grant.contentType)
        return reply(res, 403, `content-type must be ${grant.contentType}, as signed`);
      const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
      if (declared !== undefined && declared > grant.maxBytes)
        return reply(res, 413, `body of ${declared} bytes is over the ${grant.maxBytes} bytes this URL allows`);
      // What the upload may write is reserved on the data disk while it is written (storage/diskBudget.ts):
      // uploads must not fill what sessions' disks were promised.
      let reservation: Reservation | undefined;
      try {
        reservation = diskBudget?.reserve(grant.maxBytes, `an upload of ${grant.maxBytes} bytes`);
      } catch (err) {
        return reply(res, 507, err instanceof WorkerError ? err.details : 'not enough disk for the upload');
      }
      acceptBody(req, res);
      const outcome = await store.receive(grant, req, declared).finally(() => reservation?.release());
      if (outcome === 'stored') return reply(res, 200, 'stored');
      if (outcome === 'exists') return reply(res, 409, 'already uploaded: an upload URL takes one PUT');
      if (outcome === 'too_large') return reply(res, 413, `body is over the ${grant.maxBytes} bytes this URL allows`);
      return reply(res, 400, 'upload incomplete: nothing was stored');
    }

    if (req.method === 'GET') {
      if (!signer.verify(downloadFields(artifactId, expires), param('signature'))) return reply(res, 403, 'bad signature');
      if (!(expires > Date.now())) return reply(res, 403, 'expired');
      // A pipelined request's file is opened when its answer is sent, not while earlier ones wait to be read.
      if (!(await answerTurn(req, res))) return;
      const opened = await store.open(artifactId);
      if (!opened) return reply(res, 404, 'no such artifact');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': opened.size, 'x-checksum-sha256': opened.record.checksumSha256 });
      await pipeline(opened.stream, res);
      return;
    }
    return reply(res, 405, 'PUT or GET');
  };

  return { prefix: '/artifacts/', handle };
}
