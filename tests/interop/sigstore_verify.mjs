// Independent Sigstore bundle verification (npm @sigstore/verify) for the Signer's tests.
//   node sigstore_verify.mjs <bundle.json> <public-key.pem> <hint>
// Verifies a key-based bundle offline: the key is trusted under its hint; no transparency log,
// certificate log or timestamp is required (the Signer's bundles carry none). Exit 0 = verified.
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { bundleFromJSON } from '@sigstore/bundle';
import { Verifier, toSignedEntity, toTrustMaterial } from '@sigstore/verify';

const [bundlePath, keyPath, hint] = process.argv.slice(2);
const bundle = bundleFromJSON(JSON.parse(readFileSync(bundlePath, 'utf8')));
const publicKey = createPublicKey(readFileSync(keyPath, 'utf8'));
const trustedRoot = { mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] };
const keys = (requested) => {
  if (requested !== hint) throw new Error(`no trusted key for hint ${requested}`);
  return { publicKey, validFor: () => true };
};
const verifier = new Verifier(toTrustMaterial(trustedRoot, keys),
  { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
try {
  verifier.verify(toSignedEntity(bundle));
  process.stdout.write('verified\n');
} catch (error) {
  process.stderr.write(`${error.name}: ${error.message}\n`);
  process.exit(1);
}
