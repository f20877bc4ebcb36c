// Issues a demo token: node token.mjs <user> <tenant> [seconds]
// Signs HS256 with $VIEWCAST_JWT_SECRET, as your login service would; no
// dependencies (node:crypto). Prints the token.
import { createHmac } from "node:crypto";

const [user, tenant, seconds = "3600"] = process.argv.slice(2);
const secret = process.env.VIEWCAST_JWT_SECRET;
if (!user || !tenant || !secret) {
  console.error("usage: VIEWCAST_JWT_SECRET=... node token.mjs <user> <tenant> [seconds]");
  process.exit(2);
}
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
const now = Math.floor(Date.now() / 1000);
const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({
  sub: user,
  tenant,
  iat: now,
  exp: now + Number(seconds),
})}`;
const signature = createHmac("sha256", secret).update(unsigned).digest("base64url");
console.log(`${unsigned}.${signature}`);
