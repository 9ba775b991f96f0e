// Independent check of a Fulcio leaf (npm @sigstore/verify) for the Fulcio stand-in's tests.
//   node fulcio_check.mjs <trusted-root.json> <leaf.pem> <ISO date>
// Runs @sigstore/verify's own certificate verification, verifyCertificate(leaf, [date], trust):
// the chain to a certificate authority of the trusted root valid at the date (AKI/SKI path
// building, signatures, CA flags and keyCertSign, name chaining, path length, every certificate
// valid at the date), then every embedded SCT against the root's CT logs (log id, key validity at
// the SCT's time, signature over the re-derived precertificate entry). As its Verifier does with
// the default ctlogThreshold of 1, at least one verified SCT is required.
// Prints {"sctLogIds": [hex…], "issuer": …, "san": …}; exit 0 = accepted.
import { readFileSync } from 'node:fs';
import { X509Certificate } from '@sigstore/core';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial } from '@sigstore/verify';
import { verifyCertificate } from '@sigstore/verify/dist/key/index.js';

const [rootPath, leafPath, date] = process.argv.slice(2);
const trustedRoot = TrustedRoot.fromJSON(JSON.parse(readFileSync(rootPath, 'utf8')));
const leaf = X509Certificate.parse(readFileSync(leafPath, 'utf8'));
try {
  const result = verifyCertificate(leaf, [new Date(date)], toTrustMaterial(trustedRoot));
  if (result.scts.length < 1) throw new Error('expected 1 SCTs, got 0');
  process.stdout.write(JSON.stringify({
    sctLogIds: result.scts.map((id) => Buffer.from(id).toString('hex')),
    issuer: result.signer.identity.extensions.issuer,
    san: result.signer.identity.subjectAlternativeName,
  }) + '\n');
} catch (error) {
  const cause = error.cause ? ` (cause: ${error.cause.message})` : '';
  process.stderr.write(`${error.name}: ${error.message}${cause}\n`);
  process.exit(1);
}
