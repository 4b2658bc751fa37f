import type { ArtifactServiceImplementation } from '../../gen/codegen/v1/artifact_service.js';
import { errors } from '../errors.js';

/** ArtifactService: answered UNIMPLEMENTED until upload URLs land (artifacts issue). */
export function artifactService(): ArtifactServiceImplementation {
  return {
    async getUploadURL() {
      throw errors.unimplemented('GetUploadURL');
    },
    async recordArtifact() {
      throw errors.unimplemented('RecordArtifact');
    },
  };
}
