"""``make sam-local``: every function in its Lambda-like container, with ``sam local invoke``.

Spec §7 and §10, issue 12; docs/sam-local.md says why each step is as it is. In order:

1. Debian's ``docker.io`` and ``debootstrap`` are installed when missing (apt, as root).
2. A ``dockerd`` of its own starts on a bridge of its own (own socket, data root and exec root;
   ``--iptables=false``, ``--ip-forward=false``, ``--dns 127.0.0.1``).
3. The base image ``public.ecr.aws/lambda/python:3.12-x86_64`` is loaded from the cache, or built
   from a debootstrapped Debian (cached as a tarball) plus this machine's Python 3.12, ``awslambdaric``
   and Lambda's bootstrap files, and cached. Nothing is pulled.
4. ``sam build`` runs meanwhile, into this run's directory.
5. moto's server listens on the bridge address, provisioned from template.yaml; the scanner release
   is published to the OCI stand-in, which the containers reach over TLS on the bridge address; the
   Authority and Licensing are keys only (inline JWKS, no introspection; keyless and TSA off).
6. ``sam local invoke <Function> --skip-pull-image -e <event>`` runs for every event file of every
   function (API Gateway and direct shapes) with tokens and PoEs minted fresh; each invoke is judged
   by its answer (SAM exits 0 on a timeout) and printed as one line.
7. Everything it started is stopped by PID (SAM, moto, dockerd) and the bridge is removed.

Exit status 0 when every invoke answered as expected. ``--results FILE`` writes each answer (for
tests/containers/), ``--only NAME`` narrows the events, ``--serve`` keeps everything up for invoking
by hand, ``--docker-host`` uses a running Docker instead of steps 1-3.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from local.stack import stop_process

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path("/var/cache/stellaops-signer/sam-local")
IMAGE = "public.ecr.aws/lambda/python:3.12-x86_64"  # what SAM runs python3.12 x86_64 functions on
INVOKE_IMAGE = "stellaops-signer/sam-local-invoke:python3.12"  # IMAGE + this run's AWS_ENDPOINT_URL
ROOTFS_IMAGE = "stellaops-signer/debian-minbase:bookworm"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
#: What this machine's python3.12 and awslambdaric link against (ldd), beyond minbase.
ROOTFS_PACKAGES = ("ca-certificates", "libffi8", "libssl3", "libsqlite3-0", "libncursesw6", "libuuid1")
PYTHON_HOME = Path("/root/.pyenv/versions/3.12.1")
AWSLAMBDARIC = "awslambdaric==4.2.2"
REGION = "us-east-1"
INVOKE_TIMEOUT = 180.0  # seconds for one `sam local invoke`, SAM's image build included
#: + pid: a run's dockerd socket, exec root and pid files (short paths: a socket's has 107 bytes at most).
RUN_PREFIX = f"{'/run' if os.geteuid() == 0 else tempfile.gettempdir()}/stellaops-sam-"

#: events/<directory> → the function's logical id, in the SigningPipeline's order.
FUNCTIONS = {
    "authenticate": "AuthenticateFunction",
    "check_quota": "CheckQuotaFunction",
    "verify_release": "VerifyReleaseFunction",
    "sign_dsse": "SignDsseFunction",
}

STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"sam-local [{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def run(
    command: list[str], *, log_file: Path | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``command``; its output goes to ``log_file`` or is captured, and is shown if it fails."""
    if log_file is None:
        completed = subprocess.run(command, capture_output=True, text=True, **kwargs)
        output = completed.stdout + completed.stderr
    else:
        with log_file.open("a") as sink:
            completed = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, text=True, **kwargs)
        output = log_file.read_text(errors="replace")
    if completed.returncode != 0:
        raise RuntimeError(f"{shlex.join(command[:4])} … failed ({completed.returncode}):\n{output[-4000:]}")
    return completed


def stop_group(leader: int, grace: float = 15) -> None:
    """SIGTERM the process group this run started with ``leader`` (``start_new_session``), then
    SIGKILL what is left after ``grace`` seconds; returns once the group is empty."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(leader, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def remove_tree(path: Path) -> None:
    """Unmount what is left below ``path`` (lazily), then delete it."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(path, ignore_errors=True)


# --- 1. packages ------------------------------------------------------------------------------


def ensure_packages(timings: dict[str, float]) -> None:
    """apt-get install docker.io debootstrap when missing; their services are not started."""
    started = time.monotonic()
    wanted = {"docker.io": "dockerd", "debootstrap": "debootstrap"}
    missing = [package for package, command in wanted.items() if not shutil.which(command)]
    if missing:
        if os.geteuid() != 0:
            raise RuntimeError(f"{', '.join(missing)} missing: run as root to install them")
        log(f"apt-get install {' '.join(missing)}")
        policy = Path("/usr/sbin/policy-rc.d")
        created_policy = not policy.exists()
        if created_policy:  # Debian's switch that keeps a postinst from starting the package's service
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        try:
            environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            run(["apt-get", "update", "-qq"], env=environment)
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=environment)
        finally:
            if created_policy:
                policy.unlink()
    timings["packages"] = time.monotonic() - started


# --- 2. the bridge and the daemon -------------------------------------------------------------


@dataclass(frozen=True)
class Docker:
    """A Docker daemon, by its ``DOCKER_HOST``."""

    host: str

    def docker(self, *arguments: str, log_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}
        return run([docker_cli(), *arguments], log_file=log_file, env=environment)

    def bridge_gateway(self) -> str:
        """Where this daemon's containers reach the host: its default bridge's gateway (Docker gives
        the bridge the subnet's first address, and some versions name only the subnet)."""
        template = "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}"
        gateway, _, subnet = self.docker(
            "network", "inspect", "bridge", "--format", template
        ).stdout.partition(" ")
        return gateway or str(next(ipaddress.IPv4Network(subnet.strip()).hosts()))


def docker_cli() -> str:
    """Debian's docker client (it matches Debian's daemon) before any other on PATH."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


@dataclass(frozen=True)
class Bridge:
    """A Linux bridge for this run's dockerd; its address is where the containers reach the host."""

    name: str
    network: ipaddress.IPv4Network

    @property
    def address(self) -> str:
        return str(next(self.network.hosts()))

    @classmethod
    @contextlib.contextmanager
    def create(cls, runtime_dir: Path) -> Iterator[Bridge]:
        used = _networks_in_use()
        network = next(
            candidate
            for candidate in (ipaddress.IPv4Network(f"172.29.{n}.0/24") for n in range(1, 255))
            if not any(candidate.overlaps(u) for u in used)
        )
        bridge = cls(f"samlocal{os.getpid() % 100000}", network)  # at most 15 characters
        (runtime_dir / "bridge").write_text(bridge.name)  # for the sweep of a run that was killed
        run(["ip", "link", "add", "name", bridge.name, "type", "bridge"])
        try:
            run(["ip", "addr", "add", f"{bridge.address}/{network.prefixlen}", "dev", bridge.name])
            run(["ip", "link", "set", bridge.name, "up"])
            log(f"bridge {bridge.name} {bridge.address}/{network.prefixlen}")
            yield bridge
        finally:
            subprocess.run(["ip", "link", "delete", bridge.name], check=False)
            log(f"bridge {bridge.name} removed")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine routes or holds an address in (the bridge overlaps none)."""
    routes = run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines()
    addresses = run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines()
    kinds = ("local", "broadcast", "unicast", "unreachable", "blackhole", "prohibit", "throw")
    candidates = [w[1] if w[0] in kinds else w[0] for w in (line.split() for line in routes) if len(w) > 1]
    candidates += [line.split()[3] for line in addresses if len(line.split()) > 3]
    used = []
    for candidate in candidates:
        with contextlib.suppress(ValueError):  # "default", interface names…
            used.append(ipaddress.IPv4Network(candidate, strict=False))
    return used


@dataclass
class Dockerd:
    """This run's dockerd: socket, exec root and pid file under ``runtime_dir``, images and
    containers under ``data_root``."""

    runtime_dir: Path
    data_root: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client(self) -> Docker:
        return Docker(f"unix://{self.runtime_dir / 'docker.sock'}")

    @property
    def log_file(self) -> Path:
        return self.data_root.parent / "dockerd.log"

    @classmethod
    @contextlib.contextmanager
    def start(cls, runtime_dir: Path, data_root: Path, bridge: Bridge) -> Iterator[Dockerd]:
        daemon = cls(runtime_dir, data_root)
        command = [
            "dockerd",
            f"--host={daemon.client.host}",
            f"--data-root={data_root}",
            f"--exec-root={runtime_dir / 'exec'}",
            f"--pidfile={runtime_dir / 'docker.pid'}",
            f"--bridge={bridge.name}",
            "--iptables=false",  # no NAT, no rules: containers reach the host, nothing else
            "--ip-forward=false",
            "--ip-masq=false",
            "--dns=127.0.0.1",
            "--log-level=warn",
        ]
        with daemon.log_file.open("ab") as sink:
            daemon.process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            daemon._wait_ready()
            yield daemon
        finally:
            daemon.stop()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.process.returncode}):\n{self._log_tail()}")
            with contextlib.suppress(RuntimeError):
                version = self.client.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
                log(f"dockerd {version} (pid {self.process.pid}) on {self.client.host}")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer within 60 s:\n{self._log_tail()}")
            time.sleep(0.3)

    def _log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM by PID (dockerd stops its containers and its containerd), SIGKILL after 30 s."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process, grace=30)
            log(f"dockerd (pid {self.process.pid}) stopped")


def sweep_stale_runs() -> None:
    """What a killed run left (its dockerd, sam build, bridge, directories): runs whose process is
    gone. A process is stopped only if its command line names that run's directories."""
    for runtime_dir in Path(RUN_PREFIX).parent.glob(Path(RUN_PREFIX).name + "*"):
        owner = int(runtime_dir.name.rsplit("-", 1)[1])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(owner, 0)
            continue  # that run is alive
        work = Path((runtime_dir / "work").read_text().strip()) if (runtime_dir / "work").exists() else None
        for pid_file in (runtime_dir / "sam-build.pid", runtime_dir / "docker.pid"):
            pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
            cmdline = Path(f"/proc/{pid}/cmdline")
            names = [str(runtime_dir), *([str(work)] if work else [])]
            if pid and cmdline.exists() and any(n.encode() in cmdline.read_bytes() for n in names):
                stop_group(pid, grace=30)  # each was started as the leader of its own group
        if (runtime_dir / "bridge").exists():
            subprocess.run(
                ["ip", "link", "delete", (runtime_dir / "bridge").read_text().strip()], check=False
            )
        if work is not None:
            remove_tree(work)
        remove_tree(runtime_dir)
        log(f"swept the remains of run {owner}")


# --- 3. the base image ------------------------------------------------------------------------

BOOTSTRAP = """#!/bin/sh
# Lambda's python3.12 bootstrap: the execution environment, then the runtime interface client.
export AWS_EXECUTION_ENV=AWS_Lambda_python3.12
if [ -n "$AWS_LAMBDA_EXEC_WRAPPER" ]; then
  exec "$AWS_LAMBDA_EXEC_WRAPPER" /var/lang/bin/python3.12 /var/runtime/bootstrap.py
fi
exec /var/lang/bin/python3.12 /var/runtime/bootstrap.py
"""

BOOTSTRAP_PY = '''"""sys.path as Lambda orders it for python3.12, then awslambdaric (handler: _HANDLER)."""
import os
import sys

# sys.path[0] is /var/runtime (this file's directory); Lambda puts the code and the layers first.
task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
sys.path[:0] = [task_root, "/opt/python/lib/python3.12/site-packages", "/opt/python"]

from awslambdaric.__main__ import main  # noqa: E402

main([sys.argv[0], os.environ.get("_HANDLER") or os.environ["AWS_LAMBDA_FUNCTION_HANDLER"]])
'''

ENTRYPOINT = """#!/bin/sh
# As in AWS's base images: under the runtime API emulator unless a runtime API is given.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
"""

#: Lambda's own search path (the pyenv build's RUNPATH names /root/.pyenv: /var/lang/lib must be on it).
LD_LIBRARY_PATH = (
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
)
DOCKERFILE = f"""FROM {ROOTFS_IMAGE}
COPY lang/ /var/lang/
COPY runtime/ /var/runtime/
COPY lambda-entrypoint.sh /lambda-entrypoint.sh
COPY aws-lambda-rie /usr/local/bin/aws-lambda-rie
ENV LANG=C.UTF-8 \\
    TZ=:/etc/localtime \\
    PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin \\
    LD_LIBRARY_PATH={LD_LIBRARY_PATH} \\
    LAMBDA_TASK_ROOT=/var/task \\
    LAMBDA_RUNTIME_DIR=/var/runtime
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
"""

#: What of the pyenv build Lambda's Python lacks: the test suite, the static library, Tk, and the
#: site-packages (pip, and this machine's own .pth files).
PYTHON_EXCLUDES = (
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "_tkinter*",
    "libpython3.12.a",
    "site-packages",
)


def _rie_binary() -> Path:
    """The runtime interface emulator that ships with SAM CLI (SAM adds the same one to the image)."""
    found = sorted(
        (ROOT / ".venv-sam" / "lib").glob("python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64")
    )
    if not found:
        raise RuntimeError(".venv-sam has no samcli/local/rapid/aws-lambda-rie-x86_64 (bash .ci/sam-venv.sh)")
    return found[0]


def _cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One builder of the cache at a time (CI and a developer may run at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_base_image(daemon: Docker, cache: Path, work: Path, timings: dict[str, float]) -> None:
    """IMAGE in ``daemon``: ``docker load`` of the cached image, else built, then cached. The cache
    key covers every input of the recipe, so a changed recipe builds (and replaces) the image."""
    rie = _rie_binary()
    rootfs = cache / f"rootfs-{SUITE}-minbase-{_cache_key(SUITE, MIRROR, *ROOTFS_PACKAGES)}.tar"
    key = _cache_key(
        rootfs.name,
        DOCKERFILE,
        BOOTSTRAP,
        BOOTSTRAP_PY,
        ENTRYPOINT,
        AWSLAMBDARIC,
        str(PYTHON_HOME),
        *PYTHON_EXCLUDES,
        hashlib.sha256(rie.read_bytes()).hexdigest(),
    )
    image_tar = cache / f"lambda-python3.12-x86_64-{key}.tar"
    with _locked(cache):
        if image_tar.exists():
            started = time.monotonic()
            daemon.docker("load", "--quiet", "--input", str(image_tar))
            timings["image (docker load)"] = time.monotonic() - started
            log(f"{IMAGE} loaded from {image_tar}")
            return
        if not rootfs.exists():
            started = time.monotonic()
            _debootstrap(rootfs, work)
            timings["rootfs (debootstrap)"] = time.monotonic() - started
        started = time.monotonic()
        daemon.docker("import", str(rootfs), ROOTFS_IMAGE)
        context = _image_context(work / "image", rie)
        daemon.docker("build", "--quiet", "--tag", IMAGE, str(context), log_file=work / "image-build.log")
        partial = image_tar.with_suffix(".partial")
        daemon.docker("save", "--output", str(partial), IMAGE)
        partial.replace(image_tar)
        shutil.rmtree(context)
        for stale in cache.glob("lambda-python3.12-x86_64-*.tar"):
            if stale != image_tar:
                stale.unlink()
        timings["image (build)"] = time.monotonic() - started
        log(f"{IMAGE} built, cached as {image_tar}")


def _debootstrap(rootfs: Path, work: Path) -> None:
    if not PYTHON_HOME.is_dir():
        raise RuntimeError(f"{PYTHON_HOME} is missing: the image's Python 3.12 comes from it")
    target = work / "rootfs"
    log(f"debootstrap --variant=minbase {SUITE} (once; cached as {rootfs.name})")
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(ROOTFS_PACKAGES)}",
                SUITE,
                str(target),
                MIRROR,
            ],
            log_file=work / "debootstrap.log",
        )
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (target / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        partial = rootfs.with_suffix(".partial")
        run(["tar", "--numeric-owner", "-C", str(target), "-cf", str(partial), "."])
        partial.replace(rootfs)
        for stale in rootfs.parent.glob(f"rootfs-{SUITE}-minbase-*.tar"):
            if stale != rootfs:
                stale.unlink()
    finally:
        remove_tree(target)


def _image_context(context: Path, rie: Path) -> Path:
    """The build context: Python 3.12 as /var/lang, awslambdaric and the bootstrap in /var/runtime."""
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.copytree(
        PYTHON_HOME, context / "lang", symlinks=True, ignore=shutil.ignore_patterns(*PYTHON_EXCLUDES)
    )
    (context / "lang" / "lib" / "python3.12" / "site-packages").mkdir()
    for script in (context / "lang" / "bin").iterdir():  # pip, idle, pydoc…: pyenv's paths in their shebangs
        if not script.name.startswith("python"):
            script.unlink()
    python = str(PYTHON_HOME / "bin" / "python3.12")
    runtime = context / "runtime"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    wheels = ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12"]
    platforms = ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64"]
    run([*pip, "--target", str(runtime), *wheels, *platforms, AWSLAMBDARIC])
    shutil.rmtree(runtime / "bin", ignore_errors=True)
    (runtime / "bootstrap").write_text(BOOTSTRAP)
    (runtime / "bootstrap").chmod(0o755)
    (runtime / "bootstrap.py").write_text(BOOTSTRAP_PY)
    # /var/runtime's bytecode, as Lambda ships it (each cold start would compile it otherwise).
    run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(runtime)])
    (context / "lambda-entrypoint.sh").write_text(ENTRYPOINT)
    (context / "lambda-entrypoint.sh").chmod(0o755)
    shutil.copy2(rie, context / "aws-lambda-rie")
    (context / "aws-lambda-rie").chmod(0o755)
    (context / "Dockerfile").write_text(DOCKERFILE)
    return context


def build_invoke_image(daemon: Docker, work: Path, aws_endpoint: str) -> None:
    """IMAGE plus ``AWS_ENDPOINT_URL``: SAM's --env-vars only sets variables the template declares,
    and docs/sam-local.md says why the template does not declare this one."""
    context = work / "invoke-image"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {IMAGE}\nENV AWS_ENDPOINT_URL={aws_endpoint}\n")
    daemon.docker("build", "--quiet", "--tag", INVOKE_IMAGE, str(context))


# --- 4. sam build -----------------------------------------------------------------------------


class SamBuild:
    """``bash .ci/sam-build.sh`` into this run's directory (.aws-sam/ may be in use), in the
    background: it downloads the layer's wheels while the image is made. It runs in a process
    group of its own: stopping it stops the make and pip it started too."""

    def __init__(self, build_dir: Path, log_file: Path) -> None:
        self.build_dir, self.log_file = build_dir, log_file
        self.started, self.seconds = time.monotonic(), 0.0
        with log_file.open("ab") as sink:
            self.process = subprocess.Popen(
                ["bash", str(ROOT / ".ci" / "sam-build.sh"), "--build-dir", str(build_dir)],
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._timer = threading.Thread(target=self._time, daemon=True)
        self._timer.start()

    def _time(self) -> None:
        self.process.wait()
        self.seconds = time.monotonic() - self.started

    @property
    def template(self) -> Path:
        return self.build_dir / "template.yaml"

    def wait(self) -> None:
        if self.process.wait() != 0:
            raise RuntimeError(
                f"sam build failed ({self.process.returncode}):\n{self.log_file.read_text()[-4000:]}"
            )
        self._timer.join()

    def stop(self) -> None:
        stop_group(self.process.pid)
        self.process.wait()


# --- 5. the services the containers call ------------------------------------------------------


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class TlsRelay(socketserver.ThreadingTCPServer):
    """TLS on ``listen`` (the bridge address), plain TCP to ``target`` (a server bound to 127.0.0.1).

    The registry stand-in listens on loopback only, and the Signer speaks HTTPS to every registry
    that is not loopback: the containers reach it through this relay, with a certificate for the
    bridge address from the dev CA, which the functions trust through ``RegistryCaBundle``.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], context: ssl.SSLContext) -> None:
        self.target, self.context = target, context
        super().__init__(listen, _RelayHandler)
        threading.Thread(target=self.serve_forever, args=(0.1,), daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _RelayHandler(socketserver.BaseRequestHandler):
    server: TlsRelay

    def handle(self) -> None:
        self.request.settimeout(30)
        with contextlib.suppress(OSError, ssl.SSLError):
            tls = self.server.context.wrap_socket(self.request, server_side=True)
            with tls, socket.create_connection(self.server.target, timeout=30) as plain:
                _pump(tls, plain)


def _pump(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy bytes both ways until either side closes (HTTP/1.1 speaks one direction at a time)."""
    while True:
        readable = [tls] if tls.pending() else select.select([tls, plain], [], [], 30)[0]
        if not readable:
            return
        for source, sink in ((tls, plain), (plain, tls)):
            if source in readable:
                data = source.recv(65536)
                if not data:
                    return
                sink.sendall(data)


@dataclass
class Services:
    """What the functions reach from their containers, and the keys that mint their callers' credentials."""

    aws_endpoint: str
    environment: dict[str, str]
    authority: Any
    licensing: Any
    registry: Any
    published_requests: int  # the registry's request count once the release was published

    @property
    def registry_requests(self) -> int:
        """Requests the registry answered since the release was published: the functions' checks."""
        return len(self.registry.requests) - self.published_requests

    @classmethod
    @contextlib.contextmanager
    def start(cls, address: str, directory: Path) -> Iterator[Services]:
        import logging

        sys.path[:0] = [str(ROOT), str(ROOT / "shared")]
        from local import moto_kms
        from local.authority import LocalAuthority
        from local.licensing import LocalLicensing
        from local.pki import DevPki
        from local.provision import Provisioner, load_template
        from local.stack import local_parameters, publish_release

        moto_kms.apply()  # in this process: it serves moto
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every call
        moto_port = free_port(address)
        moto = ThreadedMotoServer(ip_address=address, port=moto_port, verbose=False)
        moto.start()
        endpoint = f"http://{address}:{moto_port}"
        registry = relay = None
        try:
            os.environ.update(
                {
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                    "AWS_DEFAULT_REGION": REGION,
                    "AWS_ENDPOINT_URL": endpoint,
                }
            )
            import boto3

            registry, _, release_key = publish_release(directory)
            pki = DevPki(directory / "pki")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            relay_cert = pki.issue("registry-relay", server=True, force=True, addresses=(address,))
            context.load_cert_chain(relay_cert.cert, relay_cert.key)
            relay = TlsRelay((address, 0), ("127.0.0.1", int(registry.base_url.rsplit(":", 1)[1])), context)
            registry_host = f"{address}:{relay.server_address[1]}"

            authority = LocalAuthority(directory / "authority.key")
            licensing = LocalLicensing(directory / "licensing.key")
            parameters = local_parameters(
                "https://signer.example.com", authority, registry_host, release_key.public_pem, licensing
            )
            parameters["RegistryCaBundle"] = pki.ca.cert.read_text()
            provisioner = Provisioner(boto3.session.Session(region_name=REGION), load_template(), parameters)
            provisioner.create_all()
            log(f"moto on {endpoint}, release registry on https://{registry_host} (TLS relay)")
            yield cls(
                endpoint,
                provisioner.function_environment(),
                authority,
                licensing,
                registry,
                len(registry.requests),
            )
        finally:
            if relay is not None:
                relay.stop()
            if registry is not None:
                registry.stop()
            moto.stop()
            log("moto and the registry stopped")


# --- 6. the invocations -----------------------------------------------------------------------


@dataclass
class Invocation:
    function: str
    event: str
    shape: str  # "api" (API Gateway: an authorizer or a proxy event) or "direct"
    expected: str
    status: str = ""  # the HTTP status, Allow/Deny, "ok", or the error type
    wall_ms: float = 0.0  # the whole `sam local invoke`, SAM's image build and the container's start included
    function_ms: float | None = None  # the emulator's Duration: the runtime's cold start and the handler
    answer: Any = None
    detail: str = ""
    logs: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.status == self.expected

    def line(self) -> str:
        inside = f"  (in the container {self.function_ms:5.0f} ms)" if self.function_ms is not None else ""
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.function:<22} {self.event:<40} {self.status:<14} {self.wall_ms:6.0f} ms{inside}"


def event_files(only: str = "") -> list[str]:
    """events/<function>/*.json of the four functions, in pipeline order, API shapes before direct
    ones (events/signing_pipeline/ holds state machine inputs, not function events)."""

    def order(name: str) -> tuple[int, bool, str]:
        directory, file = name.split("/")
        return list(FUNCTIONS).index(directory), file == "direct.json", file

    names = sorted(
        (
            f"{p.parent.name}/{p.name}"
            for p in (ROOT / "events").glob("*/*.json")
            if p.parent.name in FUNCTIONS
        ),
        key=order,
    )
    return [n for n in names if not only or only in n or only in FUNCTIONS[n.split("/")[0]]]


def expected_status(name: str) -> str:
    """What a good answer of each event shows (tests/functions/test_events.py checks the same)."""
    if name.endswith("direct.json"):
        return "ok"
    return "Allow" if name.startswith("authenticate/") else "200"


def fresh_event(event: dict[str, Any], services: Services) -> dict[str, Any]:
    """The event with a fresh OpToken (bound to the event's client certificate, for the principal of
    its authorizer context) and fresh PoEs from this run's Licensing: the shipped ones are stale."""
    from stellaops_signer.domain.binding import certificate_thumbprint

    event = copy.deepcopy(event)
    identity = (event.get("requestContext") or {}).get("identity") or {}
    cert_pem = (identity.get("clientCert") or {}).get("clientCertPem") or _example_certificate()
    claims = services.authority.claims_for("scanner-1", cnf={"x5t#S256": certificate_thumbprint(cert_pem)})
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    for claim, key in (
        ("sub", "sub"),
        ("client_id", "clientId"),
        ("tid", "tid"),
        ("inst", "inst"),
        ("scope", "scope"),
    ):
        if context.get(key):
            claims[claim] = context[key]
    token = services.authority.mint(claims)
    poe = services.licensing.mint(services.licensing.claims_for(claims["tid"], claims["inst"]))
    if "httpMethod" in event:  # an authorizer or a proxy event
        headers = {**(event.get("headers") or {}), "Authorization": f"Bearer {token}"}
        if "X-StellaOps-PoE" in headers:
            headers["X-StellaOps-PoE"] = poe
        event["headers"] = headers
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        body = json.loads(event["body"]) if event.get("body") else None
        if isinstance(body, dict) and "poe" in body:
            event["body"] = json.dumps({**body, "poe": {"format": "jwt", "value": poe}})
        return event
    if "opToken" in event:
        event["opToken"] = token
    if "poe" in event:
        event["poe"] = {"format": "jwt", "value": poe}
    if isinstance(event.get("request"), dict) and "poe" in event["request"]:
        event["request"]["poe"] = {"format": "jwt", "value": poe}
    return event


def _example_certificate() -> str:
    event = json.loads((ROOT / "events" / "authenticate" / "authorizer-sign-mtls.json").read_text())
    return str(event["requestContext"]["identity"]["clientCert"]["clientCertPem"])


def write_events(names: list[str], services: Services, directory: Path) -> dict[str, Path]:
    """Fresh copies of the event files under ``directory`` (0700: they hold valid tokens)."""
    paths = {}
    for name in names:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        event = json.loads((ROOT / "events" / name).read_text())
        path.write_text(json.dumps(fresh_event(event, services), indent=2))
        paths[name] = path
    return paths


def sam_command(function: str, event: Path, template: Path, env_file: Path) -> list[str]:
    return [
        str(ROOT / ".venv-sam" / "bin" / "sam"),
        "local",
        "invoke",
        function,
        "--template-file",
        str(template),
        "--event",
        str(event),
        "--env-vars",
        str(env_file),
        "--skip-pull-image",
        "--invoke-image",
        INVOKE_IMAGE,
        "--region",
        REGION,
    ]


def sam_environment(daemon: Docker) -> dict[str, str]:
    """SAM's own environment: the daemon, and the credentials it hands the container (moto's)."""
    return {
        "DOCKER_HOST": daemon.host,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
    }


_REPORT = re.compile(r"REPORT RequestId:.*?\tDuration: (?P<ms>[\d.]+) ms")


def invoke(name: str, event: Path, template: Path, env_file: Path, daemon: Docker, work: Path) -> Invocation:
    """One ``sam local invoke``, judged by its answer (SAM exits 0 on a timeout or a crash)."""
    function = FUNCTIONS[name.split("/")[0]]
    result = Invocation(
        function, name, "direct" if name.endswith("direct.json") else "api", expected_status(name)
    )
    environment = {**os.environ, **sam_environment(daemon)}
    for own in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):  # SAM's own calls, if any, are not moto's business
        environment.pop(own, None)
    started = time.monotonic()
    process = subprocess.Popen(
        sam_command(function, event, template, env_file),
        cwd=work,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=INVOKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_process(process)  # by PID; a container it leaves goes with this run's dockerd
        stdout, stderr = process.communicate()
    result.wall_ms = (time.monotonic() - started) * 1000
    result.logs = stderr
    report = _REPORT.search(stderr)
    result.function_ms = float(report["ms"]) if report else None
    result.answer = _last_json(stdout)
    result.status, result.detail = judge(name, result.answer, stderr)
    return result


def _last_json(stdout: str) -> Any:
    for line in reversed(stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line)
    return None


def judge(name: str, answer: Any, stderr: str) -> tuple[str, str]:
    """The status an answer shows: the HTTP status, Allow/Deny, "ok", or the error's type."""
    if not isinstance(answer, dict):
        if "timed out" in stderr.lower():
            return "Timeout", "the function did not answer within its timeout"
        return "NoAnswer", stderr.strip()[-600:]
    if "errorType" in answer:
        return str(answer["errorType"]), str(answer.get("errorMessage", ""))[:300]
    if name.startswith("authenticate/") and "policyDocument" in answer:
        effect = str(answer["policyDocument"]["Statement"][0]["Effect"])
        return effect, str((answer.get("context") or {}).get("errorDetail", ""))
    if "statusCode" in answer:
        return str(answer["statusCode"]), "" if answer["statusCode"] == 200 else str(answer.get("body"))[:300]
    function = name.split("/")[0]
    good = (
        (function == "authenticate" and (answer.get("principal") or {}).get("binding") == "iam")
        or (function == "check_quota" and bool(answer.get("reservation")))
        or (function == "verify_release" and (answer.get("verdict") or {}).get("trusted") is True)
        or (function == "sign_dsse" and bool((answer.get("bundle") or {}).get("dsse")))
    )
    return ("ok", "") if good else ("Unexpected", json.dumps(answer)[:300])


def serve(
    names: list[str], services: Services, daemon: Docker, events: Path, template: Path, env: Path
) -> None:
    """Keep everything up for invoking by hand; the event files are minted afresh every minute
    (tokens live 5 minutes). Ctrl-C (or SIGTERM) stops it all."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sam_environment(daemon).items())
    example = sam_command(FUNCTIONS[names[-1].split("/")[0]], events / names[-1], template, env)
    print(
        f"\nServing; in another shell (as root):\n  export {exports}\n  {shlex.join(example)}\n"
        f"Fresh events (re-minted every minute) under {events}/. Ctrl-C stops everything.",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(60)
            write_events(names, services, events)


# --- the run ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--cache-dir", type=Path, default=CACHE, help=f"rootfs and image cache (default {CACHE})"
    )
    parser.add_argument(
        "--results", type=Path, help="write every invocation, answer included, to this JSON file"
    )
    parser.add_argument(
        "--only", default="", help="invoke only the events whose name or function contains this"
    )
    parser.add_argument(
        "--serve", action="store_true", help="after the invokes, keep everything up for invoking by hand"
    )
    parser.add_argument(
        "--docker-host",
        help="use this running Docker (e.g. unix:///var/run/docker.sock) and AWS's image, not an own dockerd",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: everything started is stopped

    timings: dict[str, float] = {}
    facts: dict[str, Any] = {}
    invocations: list[Invocation] = []
    error = ""
    try:
        _run(args, timings, facts, invocations)
    except Exception as exc:  # reported below and in --results: the tier fails, it never skips
        error = f"{type(exc).__name__}: {exc}"
        print(f"sam-local: {error}", file=sys.stderr, flush=True)
    timings["total"] = time.monotonic() - STARTED
    print("\n".join(["", "timings:", *(f"  {k:<26} {v:6.1f} s" for k, v in timings.items())]), flush=True)
    if args.results:
        document = {
            "error": error,
            "timings": timings,
            "facts": facts,
            "invocations": [{**asdict(i), "ok": i.ok} for i in invocations],
        }
        args.results.write_text(json.dumps(document, indent=2))
    for failed in (i for i in invocations if not i.ok):
        print(f"\n--- {failed.function} {failed.event}: {failed.status}, expected {failed.expected}")
        print(failed.detail)
        print(failed.logs[-3000:])
    return 0 if invocations and not error and all(i.ok for i in invocations) else 1


def _run(
    args: argparse.Namespace, timings: dict[str, float], facts: dict[str, Any], invocations: list[Invocation]
) -> None:
    names = event_files(args.only)
    if not names:
        raise RuntimeError(f"no event file matches {args.only!r}")
    sweep_stale_runs()
    with contextlib.ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="stellaops-sam-local-", dir="/var/tmp"))  # 0700
        stack.callback(remove_tree, work)
        runtime_dir = Path(f"{RUN_PREFIX}{os.getpid()}")  # what a sweep needs if this run is killed
        runtime_dir.mkdir(mode=0o700)
        stack.callback(remove_tree, runtime_dir)
        (runtime_dir / "work").write_text(str(work))
        sam_build = SamBuild(work / "build", work / "sam-build.log")
        (runtime_dir / "sam-build.pid").write_text(str(sam_build.process.pid))
        stack.callback(sam_build.stop)
        if args.docker_host:
            daemon = Docker(args.docker_host)
            address = daemon.bridge_gateway()
            log(f"Docker at {daemon.host}; its containers reach the host on {address}")
        else:
            ensure_packages(timings)
            started = time.monotonic()
            bridge = stack.enter_context(Bridge.create(runtime_dir))
            dockerd = stack.enter_context(Dockerd.start(runtime_dir, work / "docker", bridge))
            daemon, address = dockerd.client, bridge.address
            timings["bridge + dockerd"] = time.monotonic() - started
            ensure_base_image(daemon, args.cache_dir, work, timings)
        started = time.monotonic()
        sam_build.wait()
        timings["sam build (in parallel)"] = sam_build.seconds
        timings["sam build (waited for)"] = time.monotonic() - started
        started = time.monotonic()
        services = stack.enter_context(Services.start(address, work))
        build_invoke_image(daemon, work, services.aws_endpoint)
        env_file = work / "env.json"
        env_file.write_text(json.dumps({"Parameters": services.environment}))
        timings["services + invoke image"] = time.monotonic() - started
        started = time.monotonic()
        print(flush=True)
        for name in names:  # each event minted just before its invoke: tokens live 5 minutes
            event = write_events([name], services, work / "events")[name]
            invocations.append(invoke(name, event, sam_build.template, env_file, daemon, work))
            print(invocations[-1].line(), flush=True)
        print(flush=True)
        timings["invokes"] = time.monotonic() - started
        facts["registryRequests"] = services.registry_requests
        facts["docker"] = daemon.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        log(f"the release registry answered {services.registry_requests} requests from the containers")
        if args.serve:
            serve(names, services, daemon, work / "events", sam_build.template, env_file)
        started = time.monotonic()
    timings["teardown"] = time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
