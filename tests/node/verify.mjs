// Verifies JWTs against a remote JWKS with jose, the way a Node.js service does in production.
// One JSON request per stdin line: {"url", "token", "alg"}; one JSON answer per stdout line:
// {"ok": true, "kid": ...} or {"ok": false, "code": ...}. A fresh createRemoteJWKSet per request,
// so jose's own JWKS cache never answers for the served set.
import { createInterface } from "node:readline";
import { createRemoteJWKSet, jwtVerify } from "jose";

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const { url, token, alg } = JSON.parse(line);
  let answer;
  try {
    const jwks = createRemoteJWKSet(new URL(url), { cacheMaxAge: 0, cooldownDuration: 0, timeoutDuration: 5000 });
    const { protectedHeader } = await jwtVerify(token, jwks, { algorithms: [alg] });
    answer = { ok: true, kid: protectedHeader.kid };
  } catch (error) {
    answer = { ok: false, code: error.code || error.name };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
