"""Credentials never travel in URLs: refuse them where a URL comes in, blank them wherever text goes out.

A URL's user info (`https://user:password@host/...`) would be echoed by every message that names the URL
(status, Events, logs). The spec refuses such URLs (`USERINFO_RULE`, the same rule as the CRD's), and
`redact` is the last line for text that quotes URLs from elsewhere (a Job's error, a library's message).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# A scheme, then an authority holding an '@' before the first '/', '?' or '#': user info.
USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*@")
USERINFO_MESSAGE = "must not contain credentials (user:password@)"
REDACTED = "[REDACTED]@"
# Signed-URL query parameters (S3, GCS, Azure SAS, OAuth): as good as a password while they are valid.
SECRET_QUERY = re.compile(
    r"([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|X-Goog-Credential"
    r"|sig|signature|token|access_token|password)=)[^&#\s'\"]*",
    re.IGNORECASE,
)


def has_userinfo(url: str) -> bool:
    return USERINFO.match(url) is not None


def redact(text: str) -> str:
    """`text` with the user info of every URL in it replaced by `[REDACTED]@`, and the values of signed-URL
    query parameters by `[REDACTED]`."""
    text = USERINFO.sub(lambda match: match.group(1) + REDACTED, text)
    return SECRET_QUERY.sub(lambda match: match.group(1) + "[REDACTED]", text)


@dataclass(frozen=True)
class PrometheusCredentials:
    """What an analysis sends to Prometheus. The values never show in a repr (logs, tracebacks)."""

    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)


class CredentialsError(ValueError):
    """A Secret that cannot serve as Prometheus credentials; the message names keys, never values."""


def prometheus_credentials(secret_data: Mapping[str, str], kind: str, where: str) -> PrometheusCredentials:
    """Credentials from a Secret's `data` (base64): `token` for bearerToken, `username` and `password` for
    basicAuth, `ca.crt` (optional, PEM) for any type. `where` names the Secret in messages."""

    def value(key: str) -> str | None:
        encoded = secret_data.get(key)
        if encoded is None:
            return None
        try:
            return base64.b64decode(encoded, validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"Secret {where}: key {key} is not base64 of UTF-8 text") from None

    def required(key: str) -> str:
        found = value(key)
        if not found:
            raise CredentialsError(f"Secret {where}: prometheusAuth type {kind} needs the key {key}")
        return found

    ca = value("ca.crt")
    if ca is not None and "-----BEGIN CERTIFICATE-----" not in ca:
        raise CredentialsError(f"Secret {where}: key ca.crt is not a PEM certificate bundle")
    if kind == "bearerToken":
        return PrometheusCredentials(bearer_token=required("token"), ca_pem=ca)
    if kind == "basicAuth":
        return PrometheusCredentials(username=required("username"), password=required("password"), ca_pem=ca)
    return PrometheusCredentials(ca_pem=ca)


class RedactingFilter(logging.Filter):
    """Blanks URL credentials in every log record a handler emits (kopf logs whole objects at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put a `RedactingFilter` on every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
