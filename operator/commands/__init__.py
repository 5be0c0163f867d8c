"""Subcommands of the `modeldeploy` CLI. Each module exposes `register(subparsers)`.

`register` adds the subcommand's arguments and sets `handler` to a function `(argparse.Namespace) -> int`
(the process exit code). Heavy imports happen inside the handler, never at module import time.
"""
