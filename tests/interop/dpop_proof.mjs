// Independent DPoP proofs (npm "dpop", panva) for the Signer's tests.
//   node dpop_proof.mjs keypair <ES256|Ed25519> <file>   -> {"jwk": <public JWK>, "jkt": <RFC 7638 thumbprint>}
//   node dpop_proof.mjs proof <file> <htm> <htu> [accessToken] [nonce]   -> the proof (compact JWS)
import { generateKeyPair, generateProof, calculateThumbprint } from 'dpop';
import { readFileSync, writeFileSync } from 'node:fs';

const [command, ...args] = process.argv.slice(2);
const ALGORITHMS = { ES256: { name: 'ECDSA', namedCurve: 'P-256' }, Ed25519: { name: 'Ed25519' } };

async function load(file) {
  const { alg, privateJwk, publicJwk } = JSON.parse(readFileSync(file, 'utf8'));
  const algorithm = ALGORITHMS[alg];
  return {
    privateKey: await crypto.subtle.importKey('jwk', privateJwk, algorithm, false, ['sign']),
    publicKey: await crypto.subtle.importKey('jwk', publicJwk, algorithm, true, ['verify']),
  };
}

if (command === 'keypair') {
  const [alg, file] = args;
  const pair = await generateKeyPair(alg, { extractable: true });
  const privateJwk = await crypto.subtle.exportKey('jwk', pair.privateKey);
  const publicJwk = await crypto.subtle.exportKey('jwk', pair.publicKey);
  writeFileSync(file, JSON.stringify({ alg, privateJwk, publicJwk }), { mode: 0o600 });
  process.stdout.write(JSON.stringify({ jwk: publicJwk, jkt: await calculateThumbprint(pair.publicKey) }));
} else if (command === 'proof') {
  const [file, htm, htu, accessToken, nonce] = args;
  const proof = await generateProof(await load(file), htu, htm, nonce || undefined, accessToken || undefined);
  process.stdout.write(proof);
} else {
  process.stderr.write('usage: keypair <alg> <file> | proof <file> <htm> <htu> [accessToken] [nonce]\n');
  process.exit(2);
}
