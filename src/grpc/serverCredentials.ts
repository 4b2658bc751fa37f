import { experimental, ServerCredentials } from '@grpc/grpc-js';

/** How often certificate files are looked at again (rotation without a restart). */
const CERTIFICATE_REFRESH_MS = 1000;

/**
 * Plaintext, or TLS from certificate files grpc-js watches (a rotated certificate is served to
 * new connections without a restart); with a client CA, client certificates it signed are
 * required (mTLS).
 */
export function serverCredentials(tls: { cert: string; key: string; clientCa: string | undefined } | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const identity = new experimental.FileWatcherCertificateProvider({
    certificateFile: tls.cert,
    privateKeyFile: tls.key,
    refreshIntervalMs: CERTIFICATE_REFRESH_MS,
  });
  const clientCa = tls.clientCa
    ? new experimental.FileWatcherCertificateProvider({ caCertificateFile: tls.clientCa, refreshIntervalMs: CERTIFICATE_REFRESH_MS })
    : null;
  // grpc-js 1.14 hands this function's first argument to the credentials as the identity provider
  // and its second as the CA provider, whatever the parameter names say.
  return experimental.createCertificateProviderServerCredentials(identity, clientCa, clientCa !== null);
}
