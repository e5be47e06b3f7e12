// A Node.js relying party that starts from an issuer, as OIDC libraries do: openid-client's
// discovery() fetches <issuer>/.well-known/openid-configuration (and checks its issuer), then jose
// verifies the token with the keys at the discovered jwks_uri.
// argv: issuer, token, audience. Trusts the CA in NODE_EXTRA_CA_CERTS. Prints one JSON line:
// {"ok": true, "kid", "jwks_uri", "algs"} or {"ok": false, "code", "message"}; exits 0 either way.
import * as client from "openid-client";
import { createRemoteJWKSet, jwtVerify } from "jose";

const [issuer, token, audience] = process.argv.slice(2);
let answer;
try {
  const config = await client.discovery(new URL(issuer), "jwksd-test-client");
  const metadata = config.serverMetadata();
  const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri), { timeoutDuration: 5000 });
  const { protectedHeader } = await jwtVerify(token, jwks, {
    issuer: metadata.issuer,
    audience,
    algorithms: metadata.id_token_signing_alg_values_supported,
  });
  answer = { ok: true, kid: protectedHeader.kid, jwks_uri: metadata.jwks_uri,
             algs: metadata.id_token_signing_alg_values_supported };
} catch (error) {
  answer = { ok: false, code: error.code || error.name, message: String(error.message) };
}
process.stdout.write(JSON.stringify(answer) + "\n");
