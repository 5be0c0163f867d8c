"""A real Prometheus that requires TLS (a private CA made with the real `openssl`) and basic auth (bcrypt
hash in Prometheus' own web config): what a hardened or managed Prometheus asks of the operator."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from realparts import missing
from realservers import PartMissingError, PrometheusServer, find_prometheus

from modeldeploy.cluster.processes import free_port, launch
from modeldeploy.credentials import PrometheusCredentials
from modeldeploy.prometheus import QueryError, query_number

USER, PASSWORD = "analysis", "pl4nted-Pr0m-passw0rd"


@dataclass(frozen=True)
class SecuredPrometheus:
    url: str
    ca_pem: str
    other_ca_pem: str  # a CA that did not sign the server certificate


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(name: str, cwd: pathlib.Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=cwd,
    )  # fmt: skip


def _certificates(workdir: pathlib.Path) -> None:
    """ca.crt signs server.crt (SAN IP 127.0.0.1); other.crt is an unrelated CA."""
    if shutil.which("openssl") is None:
        missing("openssl", "no `openssl` binary on PATH")
    _make_ca("ca", workdir)
    _make_ca("other", workdir)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=prometheus", "-keyout", "server.key",
        "-out", "server.csr", cwd=workdir,
    )  # fmt: skip
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=workdir,
    )  # fmt: skip


def secured_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPrometheus]:
    """Fixture body: start it (a module-scoped fixture in the test module calls this)."""
    import bcrypt  # noqa: PLC0415

    try:
        binary = find_prometheus()
    except PartMissingError as error:
        missing(error.part, error.why)
    workdir = tmp_path_factory.mktemp("prometheus-auth")
    _certificates(workdir)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode()
    # JSON is YAML. The web config is Prometheus' own (exporter-toolkit): TLS and basic auth on every path.
    (workdir / "web.yml").write_text(
        json.dumps(
            {
                "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                "basic_auth_users": {USER: hashed},
            }
        )
    )
    (workdir / "prometheus.yml").write_text(json.dumps({"global": {"scrape_interval": "1s"}}))
    port = free_port()
    command = [
        str(binary),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--web.config.file={workdir / 'web.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    server = PrometheusServer(launch("prometheus", command, workdir / "prometheus.log"), port, ())
    url = f"https://127.0.0.1:{port}"
    secured = SecuredPrometheus(url, (workdir / "ca.crt").read_text(), (workdir / "other.crt").read_text())
    good = PrometheusCredentials(username=USER, password=PASSWORD, ca_pem=secured.ca_pem)

    def answers() -> bool:
        try:
            return query_number(url, "vector(1)", 2, good) == 1.0
        except QueryError:
            return False

    try:
        server.server.wait_until(answers, "answering over TLS with basic auth")
        yield secured
    finally:
        server.stop()
