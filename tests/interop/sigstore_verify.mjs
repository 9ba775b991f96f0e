// Independent Sigstore bundle verification (npm @sigstore/verify) for the Signer's tests.
//   node sigstore_verify.mjs <bundle.json> <trusted-root.json> [<public-key.pem> <hint>]
// The verifier's default policy — one verified timestamp (timestampThreshold 1) and, for a
// certificate, one verified SCT (ctlogThreshold 1) — with only the transparency-log threshold at
// 0: the Attestor logs the envelope to Rekor downstream. With a public key and its hint the bundle
// is key-based (KMS mode), else the bundle's certificate must chain to the trusted root's CA.
// Prints the signer's identity; exit 0 = verified.
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';

const [bundlePath, rootPath, keyPath, hint] = process.argv.slice(2);
const bundle = bundleFromJSON(JSON.parse(readFileSync(bundlePath, 'utf8')));
const trustedRoot = TrustedRoot.fromJSON(JSON.parse(readFileSync(rootPath, 'utf8')));
let keys;
if (keyPath) {
  const publicKey = createPublicKey(readFileSync(keyPath, 'utf8'));
  keys = (requested) => {
    if (requested !== hint) throw new Error(`no trusted key for hint ${requested}`);
    return { publicKey, validFor: () => true };
  };
}
const verifier = new Verifier(toTrustMaterial(trustedRoot, keys), { tlogThreshold: 0 });
try {
  const signer = verifier.verify(toSignedEntity(bundle));
  process.stdout.write(JSON.stringify({ identity: signer.identity || null }) + '\n');
} catch (error) {
  const cause = error.cause ? ` (cause: ${error.cause.message})` : '';
  process.stderr.write(`${error.name}: ${error.message}${cause}\n`);
  process.exit(1);
}
