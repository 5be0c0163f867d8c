"""The `modeldeploy` command line: one subcommand per job, each defined in `modeldeploy.commands.*`.

Subcommand modules import their heavy dependencies (kopf, onnxruntime, ...) only when they run,
so `modeldeploy --help` stays fast and works with only the base install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modeldeploy import __version__
from modeldeploy.commands import analyze, cluster, optimize, render, run

SUBCOMMANDS = (render, run, analyze, optimize, cluster)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeploy",
        description="Deploy ML models on Kubernetes: optimize, serve with Triton, roll out as a canary.",
    )
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    exit_code: int = args.handler(args)
    return exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
