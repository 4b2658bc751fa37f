import type { ArtifactServiceImplementation } from '../../gen/codegen/v1/artifact_service.js';
import type { Artifacts } from '../artifacts/artifacts.js';

/** ArtifactService: a thin adapter from the wire to the artifacts domain. */
export function artifactService(artifacts: Artifacts): ArtifactServiceImplementation {
  return {
    async getUploadURL(request) {
      return artifacts.uploadUrl(request.sessionId, request.artifactName, request.contentType, request.sizeBytes);
    },
    async recordArtifact(request) {
      return artifacts.record(request);
    },
  };
}
