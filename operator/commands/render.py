"""`modeldeploy render`: print the child manifests of every ModelDeployment in a file (GitOps/CI preview).

Invalid input exits 2 with one line per problem, `FILE: NAME: spec.path: reason`, and prints no manifests.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

import yaml

from modeldeploy.commands.run import DefaultsError, add_default_flags, spec_defaults
from modeldeploy.defaults import SpecDefaults

REVISION_PATTERN = r"[a-z0-9]{1,10}"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "render",
        help="print the Kubernetes objects a ModelDeployment becomes",
        description=(
            "Validate every ModelDeployment in FILE (multi-document YAML or JSON) as the API server and "
            "the operator do, and print the objects the operator would apply for its current revision: the "
            "optimization Job, the stable Deployment, Services, autoscaler, PodMonitor and HTTPRoute. "
            "Exit code 2 and one line per problem when the input is invalid."
        ),
    )
    parser.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="manifest file, or - for stdin"
    )
    parser.add_argument(
        "-o", "--output", choices=("yaml", "json"), default="yaml", help="yaml documents or one JSON List"
    )
    parser.add_argument(
        "--revision",
        metavar="REV",
        help="revision name to render (1-10 lowercase letters/digits); default: computed from the spec",
    )
    # The same operator-wide defaults as `modeldeploy run` (what the chart passes it), to preview a cluster's.
    add_default_flags(parser)
    parser.set_defaults(handler=_handle)


def _read(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    with open(filename, encoding="utf-8") as stream:
        return stream.read()


def _documents(filename: str, text: str) -> tuple[list[Any], list[str]]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None], []
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return [], [f"{filename}: YAML syntax error{where}: {error.problem or error}"]
    except yaml.YAMLError as error:
        return [], [f"{filename}: YAML syntax error: {error}"]


def _printable(name: str) -> str:
    # One problem per line, even when a name holds line breaks or control characters.
    return name if re.fullmatch(r"[ -~]+", name) else json.dumps(name)


def _render_document(
    filename: str, index: int, document: Any, revision: str | None, defaults: SpecDefaults
) -> tuple[list[dict[str, Any]], list[str]]:
    # pydantic and jinja2 load only when rendering, so `modeldeploy --help` stays fast.
    from modeldeploy.rendering import API_VERSION, KIND, Owner, RenderPlan, render_all  # noqa: PLC0415
    from modeldeploy.revision import compute_revision  # noqa: PLC0415
    from modeldeploy.spec import DNS1123_LABEL, SpecError, check_name, parse_spec  # noqa: PLC0415

    if not isinstance(document, dict):
        return [], [
            f"{filename}: document {index}: must be a mapping with apiVersion, kind, metadata and spec"
        ]
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name")
    label = f"{filename}: {_printable(name) if isinstance(name, str) and name else f'document {index}'}"
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        found = f"{document.get('apiVersion')!s}/{document.get('kind')!s}"
        return [], [f"{label}: kind: expected {API_VERSION} {KIND}, got {found}"]
    problems: list[str] = []
    namespace = metadata.get("namespace", "default")
    if not isinstance(namespace, str) or len(namespace) > 63 or not re.fullmatch(DNS1123_LABEL, namespace):
        problems.append(f"{label}: metadata.namespace: must be a DNS-1123 label")
    try:
        check_name(name)
    except SpecError as error:
        problems += [f"{label}: {problem}" for problem in error.problems]
    if "spec" not in document:
        return [], [*problems, f"{label}: spec: required"]
    try:
        spec = parse_spec(document["spec"], defaults)
    except SpecError as error:
        problems += [f"{label}: {problem}" for problem in error.problems]
    if problems:
        return [], problems
    assert isinstance(name, str) and isinstance(namespace, str)
    revision = revision or compute_revision(spec)
    plan = RenderPlan(stable_revision=revision, optimize_revision=revision)
    return render_all(Owner(name=name, namespace=namespace), spec, plan), []


def _handle(args: argparse.Namespace) -> int:
    filename: str = args.filename
    if args.revision is not None and not re.fullmatch(REVISION_PATTERN, args.revision):
        print(f"--revision: must be 1-10 lowercase letters or digits, got {args.revision!r}", file=sys.stderr)
        return 2
    try:
        defaults = spec_defaults(args)
    except DefaultsError as error:
        print(str(error), file=sys.stderr)
        return 2
    try:
        text = _read(filename)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        print(f"{filename}: cannot read: {reason}", file=sys.stderr)
        return 2
    documents, problems = _documents(filename, text)
    if not documents and not problems:
        problems = [f"{filename}: no ModelDeployment found"]
    objects: list[dict[str, Any]] = []
    for index, document in enumerate(documents, start=1):
        rendered, found = _render_document(filename, index, document, args.revision, defaults)
        objects += rendered
        problems += found
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.output == "json":
        print(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2, ensure_ascii=False)
        )
    else:
        sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True, width=1000))
    return 0
