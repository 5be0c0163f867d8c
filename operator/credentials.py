"""Credentials never travel in URLs: refuse them where a URL comes in, blank them wherever text goes out.

A URL's user info (`https://user:password@host/...`) would be echoed by every message that names the URL
(status, Events, logs). The spec refuses such URLs (`USERINFO_RULE`, the same rule as the CRD's), and
`redact` is the last line for text that quotes URLs from elsewhere (a Job's error, a library's message).
"""

from __future__ import annotations

import re

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
