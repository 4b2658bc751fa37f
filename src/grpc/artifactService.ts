import type { ArtifactServiceImplementation } from '../../gen/codegen/v1/artifact_service.js';
import type { Artifacts } from '../artifacts/artifacts.js';
import { checkMap, checkRequest, REQUEST_LIMITS } from './checkRequest.js';

/** ArtifactService: a thin adapter from the wire to the artifacts domain. */
export function artifactService(artifacts: Artifacts): ArtifactServiceImplementation {
  return {
    async getUploadURL(request) {
      checkRequest(request, { sessionId: 'id', artifactName: 'name' });
      return artifacts.uploadUrl(request.sessionId, request.artifactName, request.contentType, request.sizeBytes);
    },
    async recordArtifact(request) {
      checkRequest(request, { artifactId: 'id', sessionId: 'id', artifactName: 'name', artifactType: 'name' });
      checkMap('metadata', request.metadata, {
        entries: REQUEST_LIMITS.metadataEntries,
        keyChars: REQUEST_LIMITS.metadataKeyChars,
        valueBytes: REQUEST_LIMITS.metadataValueBytes,
        totalBytes: REQUEST_LIMITS.metadataTotalBytes,
      });
      return artifacts.record(request);
    },
  };
}
