"""Kubernetes resource quantities (`500m`, `4Gi`, `1e3`): syntax check and exact values for comparisons."""

from __future__ import annotations

import re
from decimal import Decimal

# Non-negative quantities only: a negative CPU or memory amount is always a mistake in this API. Exponents
# have at most 5 digits: Kubernetes refuses exponents beyond int32 and exact arithmetic needs a bound.
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][-+]?[0-9]{1,5})?$"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_SPLIT = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(.*)$")


def is_quantity(value: str | int) -> bool:
    if isinstance(value, int):
        return value >= 0
    return re.fullmatch(QUANTITY_PATTERN.strip("^$"), value) is not None


def parse_quantity(value: str | int) -> Decimal:
    """The exact amount a quantity stands for; `ValueError` when it is not a valid quantity."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        return Decimal(value)
    if not is_quantity(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)")
    split = _SPLIT.match(value)
    assert split is not None  # guaranteed by is_quantity
    number, suffix = Decimal(split.group(1)), split.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Decimal(10) ** int(suffix[1:])


def format_quantity(amount: float) -> str:
    """A quantity string for a positive amount: whole numbers as-is, fractions in thousandths (`500m`)."""
    if amount == int(amount):
        return str(int(amount))
    return f"{round(amount * 1000)}m"
