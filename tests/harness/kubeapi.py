"""A real kube-apiserver v1.20.2 + etcd (+ kube-controller-manager) on loopback for integration tests.

There is no Docker here, so no kind: the binaries come from scripts/ensure-kube-binaries.sh, which
builds them once from Debian's `kubernetes` source package and caches them outside the repo.
There is no scheduler and no kubelet: tests create Nodes and Pods directly and set pod status through
the `status` subresource, as kubelet would.

    with KubeAPI() as kube:
        client = kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig))

Stdlib only, so the harness works before anything else is importable.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO_ROOT / "scripts" / "ensure-kube-binaries.sh"

ADMIN_USER = "admin"
# The operator's identity: no groups, so only what a ClusterRoleBinding grants it.
NATFLOW_USER = "natflow"
NATFLOW_TOKEN = "natflow-sa-token"
# The controller-manager gets its own token with full rights; it is not what the tests examine.
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"

# garbagecollector: ownerReference cascades; namespace: namespace deletion empties and removes it;
# serviceaccount(-token): every namespace gets a `default` ServiceAccount with a token Secret.
# No deployment/replicaset controllers: they would create Pods behind the tests' backs.
DEFAULT_CONTROLLERS: tuple[str, ...] = ("garbagecollector", "namespace", "serviceaccount", "serviceaccount-token")

# Logged once every informer the garbage collector needs has synced (garbagecollector.go in 1.20).
_GC_SYNCED_MARKER = b"all resource monitors have synced"
_LOG_TAIL_LINES = 40
_STOP_GRACE_SECONDS = 10.0


_T = TypeVar("_T")


class KubeAPIError(RuntimeError):
    """The binaries could not be obtained or a process did not start."""


@dataclass(frozen=True)
class KubeBinaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    etcd: Path


def ensure_binaries(script: Path = ENSURE_SCRIPT, timeout_seconds: float = 3600.0) -> KubeBinaries:
    """Run the ensure script (instant when the cache is populated) and locate the binaries."""
    try:
        completed = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KubeAPIError(f"could not run {script}: {error}") from error
    if completed.returncode != 0:
        raise KubeAPIError(
            f"{script} failed with exit code {completed.returncode}; "
            f"run it by hand (CI runs it before `make test`). Its output ended with:\n"
            f"{_tail_text(completed.stdout + completed.stderr)}"
        )
    output_lines = completed.stdout.strip().splitlines()
    if not output_lines:
        raise KubeAPIError(f"{script} printed no cache dir")
    bin_dir = Path(output_lines[-1]) / "bin"
    etcd = shutil.which("etcd")
    binaries = KubeBinaries(
        kube_apiserver=bin_dir / "kube-apiserver",
        kube_controller_manager=bin_dir / "kube-controller-manager",
        etcd=Path(etcd) if etcd else Path("/usr/bin/etcd"),
    )
    for path in (binaries.kube_apiserver, binaries.kube_controller_manager, binaries.etcd):
        if not os.access(path, os.X_OK):
            raise KubeAPIError(f"{script} succeeded but {path} is not an executable")
    return binaries


def wait_until(
    probe: Callable[[], _T | None],
    *,
    timeout_seconds: float,
    interval_seconds: float = 0.1,
    what: str = "condition",
) -> _T:
    """Poll `probe` until it returns something other than None/False; return that value."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout_seconds:.1f} s")
        time.sleep(interval_seconds)


@dataclass
class _ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass(eq=False)
class KubeAPI:
    """Context manager running etcd, kube-apiserver and optionally kube-controller-manager.

    `users` maps extra user names to their groups; each gets the token `token_for(user)`
    (`natflow` -> `natflow-sa-token`). Set NATFLOW_KUBEAPI_KEEP=1 to keep the temp dir and logs.
    """

    with_controller_manager: bool = True
    controllers: Sequence[str] = DEFAULT_CONTROLLERS
    users: Mapping[str, Sequence[str]] = field(default_factory=lambda: {NATFLOW_USER: ()})
    # Off by default even with the controller-manager: a Pod created right after its namespace
    # would race the `default` ServiceAccount, and the token volume it adds has no kubelet to use it.
    service_account_admission: bool = False
    startup_timeout_seconds: float = 60.0
    binaries: KubeBinaries | None = None
    # Extra command-line flags, e.g. for a benchmark that writes objects straight into etcd.
    etcd_flags: Sequence[str] = ()
    apiserver_flags: Sequence[str] = ()

    url: str = field(init=False, default="")
    etcd_url: str = field(init=False, default="")
    kubeconfig: Path = field(init=False, default=Path())
    admin_token: str = field(init=False, default="")
    work_dir: Path = field(init=False, default=Path())
    startup_seconds: float = field(init=False, default=0.0)
    # Seconds per startup phase, for reporting where the time goes.
    startup_phases: dict[str, float] = field(init=False, default_factory=dict)

    _tokens: dict[str, str] = field(init=False, default_factory=dict)
    _processes: list[_ManagedProcess] = field(init=False, default_factory=list)
    _etcd_data_dir: Path | None = field(init=False, default=None)
    _controller_manager_argv: list[str] = field(init=False, default_factory=list)
    _http: urllib.request.OpenerDirector = field(init=False, default_factory=lambda: _loopback_opener())

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public API -------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop the processes (newest first) and remove the temp dirs; safe to call twice."""
        for process in reversed(self._processes):
            _stop_process(process.popen)
        self._processes.clear()
        if self._etcd_data_dir is not None:
            shutil.rmtree(self._etcd_data_dir, ignore_errors=True)
            self._etcd_data_dir = None
        if self.work_dir != Path() and os.environ.get("NATFLOW_KUBEAPI_KEEP") != "1":
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def token_for(self, user: str) -> str:
        return self._tokens[user]

    def write_kubeconfig(self, path: Path, *, user: str = ADMIN_USER) -> Path:
        """Write a kubeconfig (JSON, which is YAML) authenticating as `user` with its token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "natflow-test", "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": user, "user": {"token": self._tokens[user]}}],
            "contexts": [{"name": user, "context": {"cluster": "natflow-test", "user": user}}],
            "current-context": user,
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def user_kubeconfig(self, user: str = NATFLOW_USER) -> Path:
        """A kubeconfig in the work dir for `user` (default: the operator's `natflow` user)."""
        return self.write_kubeconfig(self.work_dir / f"kubeconfig-{user.replace(':', '-')}", user=user)

    def restart_controller_manager(self) -> None:
        """Restart kube-controller-manager, e.g. right after installing CRDs.

        The garbage collector re-reads API discovery only every 30 s (fixed in 1.20), so a dependent
        of a just-created CRD type may wait that long to be collected; a fresh controller-manager
        watches every type that exists when it starts.
        """
        if not self._controller_manager_argv:
            raise KubeAPIError("this KubeAPI runs no kube-controller-manager")
        for process in [p for p in self._processes if p.name == "kube-controller-manager"]:
            _stop_process(process.popen)
            self._processes.remove(process)
        self._start_controller_manager()

    def log_path(self, process_name: str) -> Path:
        """Log file of `etcd`, `kube-apiserver` or `kube-controller-manager`."""
        return self.work_dir / f"{process_name}.log"

    def log_tail(self, process_name: str, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path(process_name).read_text(errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return _tail_text(text, lines)

    def request(
        self, method: str, path: str, body: object | None = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """A raw API call as admin; returns (HTTP status, body) without raising on 4xx/5xx.

        PATCH needs `content_type="application/merge-patch+json"` (or another patch type)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.admin_token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with self._http.open(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    # -- startup ----------------------------------------------------------------------------------

    def _start_all(self) -> None:
        phase_started = time.monotonic()
        binaries = self.binaries or ensure_binaries()
        self._mark_phase("ensure_binaries", phase_started)

        self.work_dir = Path(tempfile.mkdtemp(prefix="natflow-kubeapi-"))
        # etcd fsyncs every write; on tmpfs that costs nothing, and the data is throwaway anyway.
        shm = Path("/dev/shm")
        shm_usable = shm.is_dir() and os.access(shm, os.W_OK)
        self._etcd_data_dir = Path(tempfile.mkdtemp(prefix="natflow-etcd-", dir=shm if shm_usable else None))

        etcd_client_port, etcd_peer_port, apiserver_port = free_loopback_ports(3)
        self.url = f"https://127.0.0.1:{apiserver_port}"

        phase_started = time.monotonic()
        self._start_etcd(binaries.etcd, etcd_client_port, etcd_peer_port)
        self._mark_phase("etcd", phase_started)

        phase_started = time.monotonic()
        service_account_key, service_account_pub = self._generate_service_account_key()
        tokens_csv = self._write_tokens()
        self._mark_phase("keys_and_tokens", phase_started)

        phase_started = time.monotonic()
        self._start_apiserver(
            binaries.kube_apiserver,
            etcd_client_port=etcd_client_port,
            port=apiserver_port,
            service_account_key=service_account_key,
            service_account_pub=service_account_pub,
            tokens_csv=tokens_csv,
        )
        self.kubeconfig = self.write_kubeconfig(self.work_dir / "kubeconfig-admin", user=ADMIN_USER)
        self._mark_phase("kube_apiserver", phase_started)

        if self.with_controller_manager:
            phase_started = time.monotonic()
            self._controller_manager_argv = self._controller_manager_argv_for(
                binaries.kube_controller_manager, service_account_key
            )
            self._start_controller_manager()
            self._mark_phase("kube_controller_manager", phase_started)

    def _mark_phase(self, phase: str, started: float) -> None:
        self.startup_phases[phase] = round(time.monotonic() - started, 3)

    def _start_etcd(self, etcd: Path, client_port: int, peer_port: int) -> None:
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(etcd),
                "--name=natflow-test",
                f"--data-dir={self._etcd_data_dir}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=natflow-test={peer_url}",
                "--initial-cluster-state=new",
                "--logger=zap",
                "--log-outputs=stderr",
                "--log-level=warn",
                *self.etcd_flags,
            ],
        )
        self.etcd_url = client_url

        def etcd_healthy() -> bool:
            self._raise_if_exited()
            try:
                with self._http.open(f"{client_url}/health", timeout=2) as response:
                    return bool(json.load(response).get("health") == "true")
            except (OSError, ValueError):
                return False

        self._wait(etcd_healthy, "etcd /health", "etcd")

    def _generate_service_account_key(self) -> tuple[Path, Path]:
        key = self.work_dir / "service-account.key"
        pub = self.work_dir / "service-account.pub"
        for argv in (
            ["openssl", "genrsa", "-out", str(key), "2048"],
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
        ):
            completed = subprocess.run(argv, capture_output=True, text=True, check=False)
            if completed.returncode != 0:
                raise KubeAPIError(f"{' '.join(argv)} failed:\n{_tail_text(completed.stderr)}")
        return key, pub

    def _write_tokens(self) -> Path:
        """tokens.csv: `token,user,uid,"group1,group2"`, read once by the API server at start."""
        groups_by_user: dict[str, Sequence[str]] = {
            ADMIN_USER: ["system:masters"],
            CONTROLLER_MANAGER_USER: ["system:masters"],
            **self.users,
        }
        self._tokens = {
            ADMIN_USER: secrets.token_urlsafe(24),
            CONTROLLER_MANAGER_USER: secrets.token_urlsafe(24),
        }
        for user in self.users:
            self._tokens[user] = NATFLOW_TOKEN if user == NATFLOW_USER else f"{user}-token"
        self.admin_token = self._tokens[ADMIN_USER]
        path = self.work_dir / "tokens.csv"
        with path.open("w", newline="") as tokens_file:
            writer = csv.writer(tokens_file)
            for user, groups in groups_by_user.items():
                row = [self._tokens[user], user, f"uid-{user}"]
                if groups:
                    row.append(",".join(groups))
                writer.writerow(row)
        return path

    def _start_apiserver(
        self,
        kube_apiserver: Path,
        *,
        etcd_client_port: int,
        port: int,
        service_account_key: Path,
        service_account_pub: Path,
        tokens_csv: Path,
    ) -> None:
        argv = [
            str(kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_client_port}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--insecure-port=0",
            f"--cert-dir={self.work_dir / 'apiserver-certs'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={service_account_pub}",
            f"--service-account-signing-key-file={service_account_key}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={tokens_csv}",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--allow-privileged=true",
            "--profiling=false",
            *self.apiserver_flags,
        ]
        if not self.service_account_admission:
            argv.append("--disable-admission-plugins=ServiceAccount")
        self._spawn("kube-apiserver", argv)

        def apiserver_ready() -> bool:
            self._raise_if_exited()
            try:
                status, body = self.request("GET", "/readyz")
            except OSError:
                return False
            return status == 200 and body.strip() == b"ok"

        self._wait(apiserver_ready, "kube-apiserver /readyz", "kube-apiserver")

    def _controller_manager_argv_for(self, kube_controller_manager: Path, service_account_key: Path) -> list[str]:
        kubeconfig = self.write_kubeconfig(
            self.work_dir / "kubeconfig-controller-manager", user=CONTROLLER_MANAGER_USER
        )
        argv = [
            str(kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(self.controllers)}",
            "--leader-elect=false",
            # No serving at all: the default ports (10252/10257) would collide between harnesses.
            "--port=0",
            "--secure-port=0",
            f"--service-account-private-key-file={service_account_key}",
            "--use-service-account-credentials=false",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
        ]
        serving_cert = self.work_dir / "apiserver-certs" / "apiserver.crt"
        if serving_cert.is_file():
            argv.append(f"--root-ca-file={serving_cert}")
        return argv

    def _start_controller_manager(self) -> None:
        log_path = self.log_path("kube-controller-manager")
        # The log is appended to across restarts: look only at what this run writes.
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        self._spawn("kube-controller-manager", self._controller_manager_argv)

        def garbage_collector_synced() -> bool:
            self._raise_if_exited()
            with log_path.open("rb") as log_file:
                log_file.seek(log_offset)
                return _GC_SYNCED_MARKER in log_file.read()

        def default_service_account_exists() -> bool:
            self._raise_if_exited()
            return self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

        if "garbagecollector" in self.controllers:
            # Without this wait, an owner deleted right after startup can leave its dependents behind.
            self._wait(garbage_collector_synced, "garbage collector sync", "kube-controller-manager")
        if "serviceaccount" in self.controllers:
            # Proves the controllers act on the API, not just that the process runs.
            self._wait(default_service_account_exists, "the `default` ServiceAccount", "kube-controller-manager")

    # -- processes --------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.log_path(name)
        # setpriv --pdeathsig: the process dies with the test run even if pytest is SIGKILLed,
        # so no stray etcd/apiserver keeps ports and CPU. (preexec_fn is unsafe with threads.)
        # The signal follows the *thread* that spawned it: start the harness from the main thread.
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        # Append: a restarted controller-manager keeps its earlier log.
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                prefix + argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
            )
        self._processes.append(_ManagedProcess(name=name, popen=popen, log_path=log_path))

    def _raise_if_exited(self) -> None:
        for process in self._processes:
            exit_code = process.popen.poll()
            if exit_code is not None:
                raise KubeAPIError(
                    f"{process.name} exited with code {exit_code} during startup; {self._log_excerpt(process.name)}"
                )

    def _wait(self, probe: Callable[[], bool], what: str, process_name: str) -> None:
        try:
            wait_until(probe, timeout_seconds=self.startup_timeout_seconds, what=what)
        except TimeoutError as error:
            raise KubeAPIError(f"{error}; {self._log_excerpt(process_name)}") from error

    def _log_excerpt(self, process_name: str) -> str:
        return (
            f"the end of {self.log_path(process_name)} (removed on exit unless NATFLOW_KUBEAPI_KEEP=1):\n"
            f"{self.log_tail(process_name)}"
        )


def _loopback_opener() -> urllib.request.OpenerDirector:
    """urllib for the loopback servers: no proxies from the environment, no TLS verification.

    The API server serves a self-signed cert it makes at start; like the kubeconfigs
    (insecure-skip-tls-verify), the harness does not verify it.
    """
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified))


def _stop_process(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout=_STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def free_loopback_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is picked."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            bound.bind(("127.0.0.1", 0))
            sockets.append(bound)
        return [bound.getsockname()[1] for bound in sockets]
    finally:
        for bound in sockets:
            bound.close()


def _tail_text(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
