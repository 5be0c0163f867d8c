"""The smallest synchronous client of the Kubernetes REST API that the control plane's own tools need
(the node agent, readiness checks, `make cluster`): JSON requests and watch streams with a client
certificate. The operator itself talks to the API through `modeldeploy.kube`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
THROTTLED = 429
THROTTLED_ATTEMPTS = 10


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Credentials:
    server: str
    ca: Path
    cert: Path
    key: Path


class RestClient:
    def __init__(self, credentials: Credentials, *, timeout_s: float = 30.0) -> None:
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._session = requests.Session()
        # $REQUESTS_CA_BUNDLE would override the session's CA, and no proxy stands between us and loopback.
        self._session.trust_env = False
        self._session.verify = str(credentials.ca)
        self._session.cert = (str(credentials.cert), str(credentials.key))

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        for _ in range(THROTTLED_ATTEMPTS):
            response = self._session.request(
                method,
                self.credentials.server + path,
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": content_type, "Accept": "application/json"},
                params=params,
                timeout=self.timeout_s,
            )
            # 429: throttled, or a just-created CRD's storage still initializing; come back as asked.
            if response.status_code != THROTTLED:
                break
            time.sleep(min(float(response.headers.get("Retry-After") or 1), 2.0))
        if response.status_code >= 400:
            raise ApiError(response.status_code, method, path, response.text)
        result: dict[str, Any] = response.json() if response.content else {}
        return result

    def healthy(self, path: str = "/readyz") -> bool:
        """Whether a health endpoint (plain text, not JSON) answers 200."""
        try:
            response = self._session.get(self.credentials.server + path, timeout=5)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def watch(
        self,
        path: str,
        resource_version: str,
        *,
        timeout_s: int = 60,
        params: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The events of one watch request; ends when the server closes the stream (after `timeout_s`)."""
        query = {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": str(timeout_s)}
        query.update(params or {})
        with self._session.get(
            self.credentials.server + path,
            params=query,
            stream=True,
            timeout=(self.timeout_s, timeout_s + 30),
        ) as response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, "WATCH", path, response.text)
            for line in response.iter_lines():
                if line:
                    event: dict[str, Any] = json.loads(line)
                    yield event


def write_kubeconfig(path: Path, credentials: Credentials, *, user: str = "admin") -> Path:
    """A kubeconfig for `credentials` (kubectl, helm, kopf and the Kubernetes client all read it)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "modeldeploy",
                "cluster": {"server": credentials.server, "certificate-authority": str(credentials.ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(credentials.cert), "client-key": str(credentials.key)},
            }
        ],
        "contexts": [{"name": "modeldeploy", "context": {"cluster": "modeldeploy", "user": user}}],
        "current-context": "modeldeploy",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path
