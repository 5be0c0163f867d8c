"""`modeldeploy render` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("render", help="not implemented yet")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    raise SystemExit("modeldeploy render: not implemented yet")
