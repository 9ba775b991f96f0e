"""``make run``: the whole Signer on this machine (spec §7).

moto's server stands in for AWS (resources created from template.yaml, KMS corrected for
DIGEST signing), beside a local Authority, an OCI 1.1 registry holding a signed scanner
release, and the HTTPS + mTLS gateway on https://127.0.0.1:8443. Keys and certificates
live under ``.local/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.scanner_release import REPOSITORY, SCANNER_DIGEST, VERSION, publish_image

ROOT = Path(__file__).resolve().parent.parent


def local_parameters(
    base_url: str,
    authority: Any,
    registry: str,
    release_keys_pem: str,
    licensing: Any,
    introspect_url: str = "",
    keyless: KeylessServices | None = None,
) -> dict[str, str]:
    """Template parameter values of the local stack (and of the tests' moto-backed functions).

    ``registry`` is the ``127.0.0.1:<port>`` of the release registry stand-in; its scanner
    repository is trusted under ``release_keys_pem``. ``keyless`` names the local Fulcio, the
    Authority's token endpoint and the TSA.
    """
    extra = keyless.parameters() if keyless else {}
    return {
        **extra,
        "PublicBaseUrl": base_url,
        "AuthorityIssuer": authority.issuer,
        "AuthorityJwks": json.dumps(authority.jwks),
        "LicensingIssuer": licensing.issuer,
        "LicensingJwks": json.dumps(licensing.jwks),
        "LicensingIntrospectUrl": introspect_url,
        "Plans": json.dumps(
            {
                "dev": {"qps": 2, "concurrency": 1, "maxArtifactBytes": 65536, "dailySignatures": 20},
                "pro": {"qps": 10, "concurrency": 5, "maxArtifactBytes": 10485760, "dailySignatures": 10000}
                if not os.environ.get("SIGNER_LOCAL_ROOMY_PLANS")  # make bench: measure cost, not limits
                else {
                    "qps": 100000,
                    "concurrency": 64,
                    "maxArtifactBytes": 10485760,
                    "dailySignatures": 10**9,
                },
            }
        ),
        "ReleaseTrustedKeys": release_keys_pem,
        "ScannerRepositories": f"{registry}/{REPOSITORY}",
        "RegistryAllowList": registry,
        "RequireDpopNonce": "true",
        "DefaultSigningMode": "kms",
        "DomainName": "signer.local",
        "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/local",
    }


CLIENTS = ("scanner-1", "auditor-1", "scanner-b", "intruder")


@dataclass(frozen=True)
class KeylessServices:
    """Where the local Fulcio, the Authority's token endpoint and the TSA listen, and their trust."""

    fulcio_url: str
    fulcio_chain_pem: str
    token_url: str
    tsa_url: str
    tsa_chain_pem: str

    @classmethod
    def serving(
        cls, fulcio: Any, tsa: Any, *, fulcio_url: str, tsa_url: str, authority_url: str
    ) -> KeylessServices:
        """The services of a LocalFulcio and a LocalTsa served at these base URLs, beside the Authority."""
        from local.tsa import TIMESTAMP_PATH

        return cls(
            fulcio_url=fulcio_url,
            fulcio_chain_pem=fulcio.chain_pem,
            token_url=authority_url + "/token",
            tsa_url=tsa_url + TIMESTAMP_PATH,
            tsa_chain_pem=tsa.chain_pem,
        )

    def parameters(self) -> dict[str, str]:
        return {
            "FulcioUrl": self.fulcio_url,
            "FulcioRootCertificates": self.fulcio_chain_pem,
            "KeylessIdentityTokenUrl": self.token_url,
            "TimestampAuthorityUrl": self.tsa_url,
            "TimestampAuthorityCertificates": self.tsa_chain_pem,
        }


def register_signer_identity(session: Any, physical: dict[str, dict[str, str]], authority: Any) -> None:
    """The Signer's client secret at the Authority, in the Secrets Manager secret the template made
    (an operator registers the generated one at the Authority, or puts the one it issued)."""
    from local.authority import SIGNER_CLIENT_ID

    session.client("secretsmanager").put_secret_value(
        SecretId=physical["KeylessClientSecret"]["Ref"],
        SecretString=json.dumps(
            {"clientId": SIGNER_CLIENT_ID, "clientSecret": authority.signer_client_secret}
        ),
    )


def publish_release(directory: Path) -> tuple[Any, str, Any]:
    """Start the release registry stand-in (OCI 1.1, with the Referrers API) and publish the
    fixed scanner image signed by the release key under ``directory``."""
    from local.registry import OciRegistry
    from local.release import HttpPusher, ReleaseKey, publish_signature

    key = ReleaseKey.load_or_create(directory / "release.key")
    registry = OciRegistry()
    base_url = registry.start()
    host = base_url.removeprefix("http://")
    pusher = HttpPusher(base_url)
    digest = publish_image(pusher, REPOSITORY)
    publish_signature(
        pusher, f"{host}/{REPOSITORY}", REPOSITORY, digest, key, version=VERSION, mode="referrers"
    )
    return registry, host, key


def _deploy_pipeline(session: Any, template: Any, gateway: Any) -> str:
    """SigningPipeline in moto, its Lambda tasks running the functions' handlers in this process
    (``local/pipeline.py``); what ``signer-client pipeline`` starts executions of."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.config import default_user_config

    from local.gateway import ACCOUNT
    from local.pipeline import FUNCTIONS, MOTO_STEP_FUNCTIONS, Invocation, deploy, in_process_invoke

    default_user_config.update(MOTO_STEP_FUNCTIONS)
    handlers = {
        name: (lambda event, f=logical_id: gateway.invoke(f, event)) for name, logical_id in FUNCTIONS.items()
    }
    invocations: list[Invocation] = []
    LambdaSimpleBackend.invoke = in_process_invoke(handlers, invocations)  # type: ignore[method-assign]
    return deploy(session, template, ACCOUNT)


def stop_process(process: subprocess.Popen[Any], grace: float = 15) -> None:
    """SIGTERM by PID if it still runs, SIGKILL after ``grace`` seconds (never by name)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    directory: Path,
    port: int,
    authority_port: int,
    moto_port: int,
    quiet: bool = True,
    licensing_port: int = 0,
    fulcio_port: int = 0,
    tsa_port: int = 0,
) -> dict[str, Any]:
    """Start every component in this process; return what a client needs to call it."""
    licensing_port = licensing_port or free_port()
    fulcio_port = fulcio_port or free_port()
    tsa_port = tsa_port or free_port()
    sys.path[:0] = [str(ROOT), str(ROOT / "shared")]
    from local import moto_kms
    from local.authority import LocalAuthority
    from local.authority import handler_for as authority_handler
    from local.fulcio import LocalFulcio
    from local.fulcio import handler_for as fulcio_handler
    from local.gateway import Gateway
    from local.gateway import handler_for as gateway_handler
    from local.licensing import LocalLicensing
    from local.licensing import handler_for as licensing_handler
    from local.pki import DevPki
    from local.provision import Provisioner, load_template
    from local.tls import MutualTlsServer, server_context
    from local.tsa import TIMESTAMP_PATH, LocalTsa
    from local.tsa import handler_for as tsa_handler

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stack.json").unlink(missing_ok=True)  # written again once everything listens
    pki = DevPki(directory / "pki")
    server_identity = pki.issue("gateway", server=True)
    clients = {name: pki.issue(name) for name in CLIENTS}

    moto_kms.apply()
    from moto.server import ThreadedMotoServer

    os.environ["MOTO_PORT"] = str(moto_port)  # where moto's Step Functions send their Lambda tasks
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every AWS call
    moto.start()
    endpoint = f"http://127.0.0.1:{moto_port}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    import boto3

    authority = LocalAuthority(directory / "authority.key")
    licensing = LocalLicensing(directory / "licensing.key")
    licensing_url = f"https://127.0.0.1:{licensing_port}"
    registry, registry_host, release_key = publish_release(directory)
    base_url = f"https://127.0.0.1:{port}"
    authority_url = f"https://127.0.0.1:{authority_port}"
    fulcio_url, tsa_url = f"https://127.0.0.1:{fulcio_port}", f"https://127.0.0.1:{tsa_port}"
    fulcio = LocalFulcio(
        directory / "fulcio", oidc_issuer=authority.issuer, oidc_jwks=authority.jwks, base_url=fulcio_url
    )
    tsa = LocalTsa(directory / "tsa")
    keyless = KeylessServices.serving(
        fulcio, tsa, fulcio_url=fulcio_url, tsa_url=tsa_url, authority_url=authority_url
    )
    template = load_template()
    provisioner = Provisioner(
        boto3.session.Session(region_name="us-east-1"),
        template,
        local_parameters(
            base_url,
            authority,
            registry_host,
            release_key.public_pem,
            licensing,
            licensing_url + "/license/introspect",
            keyless,
        ),
    )
    physical = provisioner.create_all()
    register_signer_identity(provisioner.session, physical, authority)
    environment = provisioner.function_environment()
    os.environ.update(environment)
    os.environ["SIGNER_REGISTRY_INSECURE_LOOPBACK"] = "true"  # the stand-in registry speaks plain HTTP
    os.environ["REQUESTS_CA_BUNDLE"] = str(pki.ca.cert)  # the functions reach Licensing over the dev CA
    if quiet:
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ["POWERTOOLS_LOG_LEVEL"] = os.environ.get("SIGNER_LOCAL_LOG_LEVEL", "WARNING")

    gateway = Gateway(template)
    pipeline_arn = _deploy_pipeline(provisioner.session, template, gateway)
    gateway_server = MutualTlsServer(
        port,
        gateway_handler(gateway, log=lambda line: print(line, flush=True)),
        server_context(pki, server_identity),
    )
    authority_server = MutualTlsServer(  # scanners authenticate with certificates, the Signer with a secret
        authority_port,
        authority_handler(authority, authority_url),
        server_context(pki, server_identity, require_client_cert=False),
    )
    fulcio_server = MutualTlsServer(
        fulcio_port, fulcio_handler(fulcio), server_context(pki, server_identity, require_client_cert=False)
    )
    tsa_server = MutualTlsServer(
        tsa_port, tsa_handler(tsa), server_context(pki, server_identity, require_client_cert=False)
    )
    fulcio_server.start()
    tsa_server.start()
    licensing_server = MutualTlsServer(
        licensing_port,
        licensing_handler(licensing),
        server_context(pki, server_identity, require_client_cert=False),
    )
    licensing_server.start()
    gateway_server.start()
    authority_server.start()
    info = {
        "signer": base_url,
        "authority": authority_url,
        "fulcio": fulcio_url,
        "tsa": tsa_url + TIMESTAMP_PATH,
        "licensing": licensing_url,
        "aws": endpoint,
        "ca": str(pki.ca.cert),
        "clients": {name: {"cert": str(i.cert), "key": str(i.key)} for name, i in clients.items()},
        "registry": registry.base_url,
        "scannerDigest": SCANNER_DIGEST,
        "resources": {k: v["Ref"] for k, v in physical.items()},
        "signingPipeline": pipeline_arn,
        "environment": {k: v for k, v in environment.items() if not k.endswith("JWKS")},
    }
    facts = directory / "stack.json"
    facts.with_suffix(".tmp").write_text(json.dumps(info, indent=2))
    facts.with_suffix(".tmp").replace(facts)  # atomic: whoever sees the file sees all of it
    info["_servers"] = (
        gateway_server,
        authority_server,
        licensing_server,
        fulcio_server,
        tsa_server,
        registry,
        moto,
    )
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT / ".local")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--authority-port", type=int, default=8444)
    parser.add_argument("--licensing-port", type=int, default=8445)
    parser.add_argument("--aws-port", type=int, default=0, help="moto server port (0: any free port)")
    parser.add_argument("--verbose", action="store_true", help="show the functions' logs and metrics")
    args = parser.parse_args(argv)
    info = start(
        args.dir,
        args.port,
        args.authority_port,
        args.aws_port or free_port(),
        quiet=not args.verbose,
        licensing_port=args.licensing_port or free_port(),
    )
    client = info["clients"]["scanner-1"]
    print(
        f"""Stella Ops Signer (local) on {info["signer"]}  —  mTLS required, CA {info["ca"]}
  Authority    {info["authority"]}/token   (client credentials, mTLS client auth)
  Fulcio (CA)  {info["fulcio"]}   TSA  {info["tsa"]}   (keyless signing and RFC 3161 timestamps)
  AWS (moto)   {info["aws"]}
  Stack facts  {args.dir / "stack.json"}

Sign a file end to end (token, mTLS, verification of the answer), keyless too, then verify offline:
  .venv/bin/signer-client sign README.md
  .venv/bin/signer-client sign README.md --mode keyless --bundle sigstore --out answer.json
  .venv/bin/signer-client keys > keys.json
  .venv/bin/signer-client verify answer.json README.md --keys keys.json

Or with curl:
  TOKEN=$(curl -s --cacert {info["ca"]} --cert {client["cert"]} --key {client["key"]} \\
    -d grant_type=client_credentials -d scope=signer.sign {info["authority"]}/token \\
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl --cacert {info["ca"]} --cert {client["cert"]} --key {client["key"]} \\
    -H "Authorization: Bearer $TOKEN" {info["signer"]}/api/v1/signer/keys
Ctrl-C stops it.""",
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in info["_servers"]:
        (server.stop if hasattr(server, "stop") else server.shutdown)()


if __name__ == "__main__":
    main()
