"""Mutation testing of the pure core: how many small deliberate bugs the fast tests let through.

    .venv/bin/python benchmarks/mutation.py                  # the default modules and their fast tests
    .venv/bin/python benchmarks/mutation.py --show           # ... and print every survivor's diff
    .venv/bin/python benchmarks/mutation.py operator/rollout/transitions.py operator/rollout/plan.py
    .venv/bin/python benchmarks/mutation.py 'operator/optimizer/selection.py=tests/test_optimizer_units.py'

Each argument is `MODULE[=TEST,TEST...]`; without `=` the tests come from `TESTS` below (fast, pure test
files only). `mutmut` (3.x) mutates one module at a time and runs, for each mutant, only the tests that
reach the mutated function, in a forked process with a timeout (`--timeout-multiplier` x the test's
baseline time + 5 s). It prints, per module, the mutants killed and surviving and the surviving share;
`--show` adds each survivor's diff. Equivalent mutants (no behaviour can tell them apart) are listed in
docs/testing.md.

mutmut derives module names from file paths, but the package folder `operator/` is installed as
`modeldeploy`: each module is therefore run in a staging copy (under ~/.cache/modeldeploy/mutation/) where
the folder is called `modeldeploy/`, with the tests, the CRD, the chart, the examples and the docs beside
it (tests/test_rollout_table.py reads its table from docs/operator.md: without docs/ the baseline run
fails to collect, and every mutant stays 'not checked'; a failed `mutmut run` now prints its output's
end). The run is CPU-heavy: it is started with `nice -n 15` and one worker by default (`--jobs`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = "operator"
PACKAGE = "modeldeploy"
STAGING = Path.home() / ".cache" / "modeldeploy" / "mutation"
COPIED = ("tests", "crds", "helm", "examples", "argocd", "docs")

# The fast, pure tests that guard each module (no Triton, Prometheus, helm or API server).
# Pytest arguments: files, and `-k` expressions to leave out the slowest tests (each survivor runs every test
# that reaches it, so a 30 s property test would cost 30 s per surviving mutant).
TESTS: dict[str, tuple[str, ...]] = {
    "operator/analysis.py": ("tests/test_analysis.py", "tests/test_analysis_edges.py"),
    "operator/rendering.py": (
        "tests/test_render.py",
        "tests/test_rendering_rules.py",
        "tests/test_examples.py",
    ),
    "operator/spec.py": (
        "tests/test_spec.py",
        "tests/test_crd.py",
        "tests/test_crd_generated.py",
        "-k",
        "not drawn_from_the_schema and not loosened_by_one",
    ),
    **{
        f"operator/rollout/{name}.py": (
            "tests/test_rollout.py",
            "tests/test_rollout_parts.py",
            "tests/test_rollout_plan.py",
            "tests/test_rollout_table.py",
            "tests/test_rollout_outcomes.py",
            "tests/test_rollout_plan_edges.py",
            "tests/test_rollout_canary_outcomes.py",
        )
        for name in ("transitions", "canary", "plan", "state", "status")
    },
    "operator/optimizer/accuracy.py": ("tests/test_optimizer_accuracy.py", "tests/test_optimizer_units.py"),
    "operator/optimizer/selection.py": ("tests/test_optimizer_selection.py", "tests/test_optimizer_units.py"),
}
DEFAULT_MODULES = ("operator/analysis.py", "operator/rendering.py", "operator/spec.py")
STATUS_LINE = re.compile(r"^\s*(?P<name>\S+): (?P<status>[a-z ]+)$")
KILLED = {"killed", "timeout", "segfault"}


@dataclass(frozen=True)
class Target:
    module: str  # path under the repository, e.g. operator/analysis.py
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    target: Target
    statuses: dict[str, str]  # mutant name -> killed | survived | timeout | no tests | ...
    seconds: float

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.statuses.values())

    @property
    def survivors(self) -> list[str]:
        return sorted(name for name, status in self.statuses.items() if status not in KILLED)

    @property
    def surviving_share(self) -> float:
        return len(self.survivors) / len(self.statuses) if self.statuses else 0.0


def parse_target(text: str) -> Target:
    module, _, tests = text.partition("=")
    module = module.strip()
    if not (REPO / module).is_file() or not module.startswith(f"{PACKAGE_DIR}/"):
        raise SystemExit(f"{module}: not a module under {PACKAGE_DIR}/")
    chosen = tuple(t for t in tests.split(",") if t) if tests else TESTS.get(module, ())
    # Test files that do not exist (yet) are left out; other arguments (-k ...) are kept.
    chosen = tuple(t for t in chosen if not t.endswith(".py") or (REPO / t).is_file())
    if not any(t.endswith(".py") for t in chosen):
        raise SystemExit(f"{module}: no test files given and none known: write MODULE=tests/test_x.py")
    return Target(module, chosen)


def stage(target: Target, jobs_timeout: tuple[float, float]) -> Path:
    """A fresh copy of the repository where the package folder carries its import name."""
    name = target.module.removeprefix(f"{PACKAGE_DIR}/").removesuffix(".py").replace("/", ".")
    root = STAGING / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / PACKAGE_DIR, root / PACKAGE, ignore=ignore)
    for folder in COPIED:
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    mutated = f"{PACKAGE}/{target.module.removeprefix(PACKAGE_DIR + '/')}"
    multiplier, constant = jobs_timeout
    config = "\n".join(
        [
            "",
            "[tool.mutmut]",
            f'source_paths = ["{PACKAGE}/"]',
            f'only_mutate = ["{mutated}"]',
            f"pytest_add_cli_args_test_selection = {list(target.tests)!r}".replace("'", '"'),
            f"also_copy = {[f'{folder}/' for folder in COPIED]!r}".replace("'", '"'),
            "use_git_change_detection = false",
            f"timeout_multiplier = {multiplier}",
            f"timeout_constant = {constant}",
            "",
        ]
    )
    (root / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text() + config)
    return root


def mutmut(root: Path, *args: str, timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).with_name("mutmut")
    if not executable.exists():
        raise SystemExit("mutmut is not installed: .venv/bin/pip install -e '.[mutation]'")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "CI": ""}
    return subprocess.run(
        ["nice", "-n", "15", str(executable), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run(target: Target, jobs: int, budget_s: float, timeouts: tuple[float, float], show: bool) -> Result:
    started = time.monotonic()
    root = stage(target, timeouts)
    try:
        done = mutmut(root, "run", "--max-children", str(jobs), timeout_s=budget_s)
        if done.returncode != 0:
            # E.g. the baseline run of the tests failed in the staging copy ("failed to collect stats"):
            # every mutant then stays 'not checked'. Show why instead of a table of unchecked mutants.
            tail = (done.stdout + done.stderr).replace("\r", "\n").splitlines()[-25:]
            print(f"  {target.module}: mutmut run exited {done.returncode}:")
            print("\n".join(f"      {line}" for line in tail if line.strip()))
    except subprocess.TimeoutExpired:
        print(f"  {target.module}: the run passed its budget of {budget_s:.0f} s; results so far")
    listing = mutmut(root, "results", "--all", "true").stdout
    statuses = {
        match["name"]: match["status"]
        for line in listing.splitlines()
        if (match := STATUS_LINE.match(line)) is not None
    }
    result = Result(target, statuses, time.monotonic() - started)
    if show:
        for name in result.survivors:
            diff = mutmut(root, "show", name).stdout
            changed = [
                line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")
            ]
            print(f"  {name} ({statuses[name]})")
            print("\n".join(f"      {line}" for line in changed))
    return result


def report(results: list[Result]) -> None:
    print()
    print(f"{'module':38} {'mutants':>8} {'killed':>7} {'survived':>9} {'surviving':>10} {'time':>7}")
    total = survived = 0
    for result in results:
        counts = result.counts
        killed = sum(counts[status] for status in KILLED)
        print(
            f"{result.target.module:38} {len(result.statuses):8d} {killed:7d} {len(result.survivors):9d}"
            f" {result.surviving_share:10.1%} {result.seconds:6.0f}s"
        )
        other = {status: n for status, n in counts.items() if status not in KILLED | {"survived"}}
        if other:
            print(f"{'':38} not survived but not killed either: {other}")
        total += len(result.statuses)
        survived += len(result.survivors)
    if len(results) > 1 and total:
        print(f"{'all':38} {total:8d} {total - survived:7d} {survived:9d} {survived / total:10.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("modules", nargs="*", default=list(DEFAULT_MODULES), help="MODULE[=TEST,TEST...]")
    parser.add_argument("--show", action="store_true", help="print each surviving mutant's diff")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--budget", type=float, default=1800, help="seconds per module at most")
    parser.add_argument("--timeout-multiplier", type=float, default=5.0, help="per mutant, x baseline")
    args = parser.parse_args()
    targets = [parse_target(text) for text in args.modules]
    results = []
    for target in targets:
        print(f"{target.module}: tests {' '.join(target.tests)}", flush=True)
        results.append(run(target, args.jobs, args.budget, (args.timeout_multiplier, 5.0), args.show))
    report(results)


if __name__ == "__main__":
    main()
