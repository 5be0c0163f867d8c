"""The Dockerfile, read as Docker reads it (building needs a Docker engine: e2e/ does that).

Checks what a broken image would get wrong at run time: the two targets exist, they run as a numeric
non-root user (Kubernetes `runAsNonRoot` can only verify a numeric USER), their entry points are real
`modeldeploy` subcommands, they install the package through the pyproject extras that exist, no compiler
reaches the operator image, and the build context holds what the COPY lines need and nothing else.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from modeldeploy.cli import build_parser

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
TARGETS = {"operator": "operator", "optimizer": "optimizer"}  # target → pyproject extra it installs
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|cc)\b")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [item.arguments for item in self.instructions if item.keyword == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, comments dropped and backslash continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are removed by Docker
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def parse_stages(text: str) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            match = re.fullmatch(
                r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", instruction.arguments, re.I
            )
            assert match, instruction
            name = match.group(2) or str(len(stages))
            current = Stage(name=name, base=match.group(1))
            stages[name] = current
        elif current is not None:
            current.instructions.append(instruction)
    return stages


STAGES = parse_stages(DOCKERFILE.read_text())


def lineage(stage_name: str) -> list[Stage]:
    """The stage and every stage it is built FROM or COPYs --from, transitively."""
    seen: list[Stage] = []
    queue = [stage_name]
    while queue:
        name = queue.pop()
        if name not in STAGES or any(stage.name == name for stage in seen):
            continue
        stage = STAGES[name]
        seen.append(stage)
        queue.append(stage.base)
        for copy in stage.all("COPY"):
            queue += re.findall(r"--from=(\S+)", copy)
    return seen


def exec_form(arguments: str | None) -> list[str]:
    assert arguments is not None
    value = json.loads(arguments)  # shell form would not pass signals to the operator
    assert isinstance(value, list)
    return [str(item) for item in value]


@pytest.mark.parametrize("target", TARGETS)
def test_target_exists_and_starts_from_a_slim_python(target: str) -> None:
    assert target in STAGES, f"no `FROM ... AS {target}` in the Dockerfile"
    arguments = {
        item.split("=", 1)[0]: item.split("=", 1)[1]
        for item in (i.arguments for i in parse_instructions(DOCKERFILE.read_text()) if i.keyword == "ARG")
        if "=" in item
    }
    base = STAGES[target].base
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: arguments.get(m.group(1), m.group(0)), base)
    assert re.fullmatch(r"python:3\.1[1-9][\w.-]*-slim[\w.-]*", resolved), resolved


@pytest.mark.parametrize("target", TARGETS)
def test_runs_as_numeric_non_root_user(target: str) -> None:
    user = STAGES[target].last("USER")
    assert user is not None, f"{target} runs as root"
    assert re.fullmatch(r"\d+(:\d+)?", user), f"{target}: USER {user} is not numeric"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0
    assert not gid or int(gid) != 0


def test_chart_runs_the_operator_as_the_image_user() -> None:
    user = STAGES["operator"].last("USER")
    assert user is not None
    values = yaml.safe_load((REPO_ROOT / "helm" / "modeldeploy" / "values.yaml").read_text())
    assert values["runAsUser"] == int(user.partition(":")[0])


@pytest.mark.parametrize(("target", "subcommand"), [("operator", "run"), ("optimizer", "optimize")])
def test_entry_point_is_a_real_modeldeploy_subcommand(
    target: str, subcommand: str, capsys: pytest.CaptureFixture[str]
) -> None:
    entrypoint = exec_form(STAGES[target].last("ENTRYPOINT"))
    command = exec_form(STAGES[target].last("CMD"))
    assert entrypoint == ["modeldeploy"]
    assert command[0] == subcommand
    # The real CLI accepts the default arguments (`--help` prints usage and exits 0).
    if "--help" in command:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(command)
        assert exit_info.value.code == 0
        assert f"usage: modeldeploy {subcommand}" in capsys.readouterr().out
    else:
        assert build_parser().parse_args(command).command == subcommand


@pytest.mark.parametrize(("target", "extra"), TARGETS.items())
def test_installs_the_package_through_its_pyproject_extra(target: str, extra: str) -> None:
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra in extras
    runs = " ".join(run for stage in lineage(target) for run in stage.all("RUN"))
    assert f'"/src[{extra}]"' in runs, f"{target} does not pip install /src[{extra}]"
    other = next(e for e in TARGETS.values() if e != extra)
    assert f"[{other}]" not in runs, f"{target} also installs the {other} extra"


@pytest.mark.parametrize("target", TARGETS)
def test_final_image_keeps_no_build_tools(target: str) -> None:
    stage = STAGES[target]
    assert not stage.all("RUN") or all("pip install" not in run for run in stage.all("RUN"))
    for ancestor in lineage(target):
        for run in ancestor.all("RUN"):
            if "apt-get install" in run or "apk add" in run:
                assert not COMPILERS.search(run), f"{ancestor.name} installs a compiler: {run}"
    # Only the ready virtual environment is copied in, not the sources or a pip cache.
    copies = stage.all("COPY")
    assert copies and all("--from=" in copy for copy in copies)


def test_operator_image_has_no_tensorrt() -> None:
    text = " ".join(run for stage in lineage("operator") for run in stage.all("RUN"))
    assert "tensorrt" not in text.lower()


def test_optimizer_build_argument_adds_tensorrt() -> None:
    build_args = {
        arg.split("=", 1)[0]: arg.split("=", 1)[1].strip('"')
        for stage in lineage("optimizer")
        for arg in stage.all("ARG")
        if "=" in arg
    }
    assert build_args.get("TENSORRT") == "false", "TensorRT must be opt-in (GPU nodes only)"
    runs = " ".join(run for stage in lineage("optimizer") for run in stage.all("RUN"))
    assert '"$TENSORRT" = "true"' in runs
    assert "tensorrt" in build_args.get("GPU_PACKAGES", "")


def test_python_m_never_runs_inside_the_source_folder() -> None:
    # The folder operator/ would shadow the standard library's `operator` module for `python -m`.
    for stage in STAGES.values():
        workdir = "/"
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = instruction.arguments
            if instruction.keyword == "RUN" and "python -m" in instruction.arguments:
                assert workdir != "/src", f"stage {stage.name}: `python -m` runs in /src"


def venv_bin_on_path(target: str) -> str:
    """The virtual environment's bin folder that the target puts first on PATH (and copies in)."""
    env = " ".join(STAGES[target].all("ENV"))
    match = re.search(r"PATH=(\S+?)/bin:\$PATH", env)
    assert match, f"{target}: PATH does not start with a virtual environment"
    venv = match.group(1)
    created = " ".join(run for stage in lineage(target) for run in stage.all("RUN"))
    assert f"python -m venv {venv}" in created
    assert any(f" {venv} {venv}" in f" {copy}" for copy in STAGES[target].all("COPY"))
    return f"{venv}/bin"


@pytest.mark.parametrize("target", TARGETS)
def test_modeldeploy_console_script_is_on_path(target: str) -> None:
    assert venv_bin_on_path(target)
    assert exec_form(STAGES[target].last("ENTRYPOINT"))[0] == "modeldeploy"


def test_optimization_job_runs_in_the_optimizer_image() -> None:
    # The Job the operator renders uses the spec's default optimizer image and calls `modeldeploy optimize`
    # itself: the image must have that command on PATH, and the Job must run it as a non-root user.
    from modeldeploy.rendering import Owner, render_optimization_job  # noqa: PLC0415
    from modeldeploy.spec import DEFAULT_OPTIMIZER_IMAGE, parse_spec  # noqa: PLC0415

    spec = parse_spec(
        {"model": {"name": "det", "uri": "s3://models/det.onnx"}, "storage": {"uri": "pvc://models/repo"}}
    )
    job = render_optimization_job(Owner("ocr", "ml"), spec, "a1b2c3d4e5")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == DEFAULT_OPTIMIZER_IMAGE
    assert DEFAULT_OPTIMIZER_IMAGE.rsplit(":", 1)[0].endswith("/optimizer")
    assert container["command"][:2] == ["modeldeploy", "optimize"]
    assert venv_bin_on_path("optimizer")
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("target", TARGETS)
def test_read_only_root_filesystem_friendly(target: str) -> None:
    env = " ".join(STAGES[target].all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    assert STAGES[target].last("WORKDIR") == "/tmp"


# --- the build context ----------------------------------------------------------------------------------


def docker_pattern_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regex: `**/` spans any directories (or none), `*` and `?` stay in one."""
    regex, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif pattern[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif pattern[index] == "?":
            regex, index = regex + "[^/]", index + 1
        else:
            regex, index = regex + re.escape(pattern[index]), index + 1
    return regex


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes, a match on a parent covers children."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        regex = docker_pattern_regex(pattern)
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "README.md", "operator/cli.py", "operator/commands/run.py"]
)
def test_build_context_includes_what_the_package_needs(path: str) -> None:
    assert not dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".tools/kubectl-layer/helm",
        "tests/test_cli.py",
        "operator/__pycache__/cli.cpython-311.pyc",
        "operator/commands/__pycache__",
        "helm/modeldeploy/values.yaml",
    ],
)
def test_build_context_leaves_out_the_rest(path: str) -> None:
    assert dockerignore_excludes(path)


def test_every_copied_source_exists_and_is_in_the_context() -> None:
    for stage in STAGES.values():
        for copy in stage.all("COPY"):
            if "--from=" in copy:
                continue
            *sources, _destination = shlex.split(copy)
            for source in sources:
                assert (REPO_ROOT / source).exists(), f"COPY {source}: missing"
                assert not dockerignore_excludes(source.rstrip("/")), (
                    f"COPY {source}: excluded by .dockerignore"
                )


def test_package_sources_are_complete_for_pip() -> None:
    # pyproject's `readme` must be in the context, or `pip install /src` fails inside the build.
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    copied = " ".join(copy for stage in STAGES.values() for copy in stage.all("COPY"))
    assert project["readme"] in copied
    assert "pyproject.toml" in copied
