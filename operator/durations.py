"""Go-style durations (`30s`, `5m`, `1h30m`, `1.5h`), as the CRD writes them, to and from `timedelta`."""

from __future__ import annotations

import re
from datetime import timedelta

# The subset of Go's time.ParseDuration this API accepts: no sign, units ms, s, m, h.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Go's time.Duration is an int64 of nanoseconds: the API server's CEL `duration()` refuses anything longer.
MAX_SECONDS = (2**63 - 1) / 1e9


def parse_duration(text: str) -> timedelta:
    """`ValueError` when `text` is not a duration like `30s`, `5m` or `1h30m`."""
    if re.fullmatch(DURATION_PATTERN.strip("^$"), text) is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than the longest duration, 2562047h47m16s")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest Go-style string for `value` (`1h30m`, `90ms`); `0s` for zero."""
    milliseconds = round(value.total_seconds() * 1000)
    if milliseconds <= 0:
        return "0s"
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{seconds}s" if seconds else ""]
    text = "".join(parts)
    if millis:
        text += f"{millis}ms"
    return text
