"""Mutation testing of the modules whose tests must be strongest (docs/reliability.md, "Mutation testing").

    .venv/bin/pip install mutmut==3.8.1       # a developer's tool: not in CI, not in the [test] extra
    .venv/bin/python -m tests.mutation [MODULE ...] [--workdir DIR] [--max-children N] [--fresh]
                                       [--tests TEST ...] [--mutants NAME ...]

For each module, mutmut 3 copies the source into DIR/MODULE/mutants/ (the checkout itself is never
rewritten), mutates the module's functions and runs, for each mutant, the tests of the module's selection
that reached the mutated function. Only tests that call the code in their own process can see a mutant:
a server in another process imports the unmutated package. One embedded PostgreSQL, started here (or the
one in IMAGESEARCH_DATABASE_URL), serves every mutant's test session. Prints each module's score and its
survivors, and leaves DIR/MODULE/report.txt. mutmut keeps each mutant's result while its function is
unchanged, even when the tests change: run with --fresh after changing them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module -> (the files mutated, the tests that exercise them in their own process)
MODULES = {
    "signature": (["flask_app/signature.py"], ["tests/test_signature_rules.py", "tests/test_signatures.py"]),
    "rpc_signature": (["flask_app/rpc_signature.py"], ["tests/test_rpc_signature_rules.py"]),
    "filters": (["imagesearch_pg/store/filters.py"],
                ["tests/test_filter_rules.py", "tests/test_filters.py", "tests/test_sql_filter.py"]),
    "throttling": (["imagesearch_pg/service/throttling.py", "imagesearch_pg/store/request_counts.py"],
                   ["tests/test_throttle_windows.py"]),
    # Not tests/test_service.py: a minute a mutant, and its module fixture's fixed instance name, left behind
    # when a mutant's session is killed at its time limit, fails every later session (a false kill).
    "search_window": (["imagesearch_pg/service/search_window.py"],
                      ["tests/test_window_rules.py", "tests/test_search_window.py"]),
    "lease": (["imagesearch_pg/tasks/lease.py"], ["tests/test_lease.py"]),
}
# What the tests read besides the packages: the schema's SQL and migrations, found beside the packages, and
# benchmarks/ (tests/http_requests.py signs with benchmarks/signed_requests.py).
ALSO_COPY = ("sql", "migrations", "alembic.ini", "benchmarks")
LINKED = ("imagesearch_pg", "flask_app", "tests", *ALSO_COPY)
KILLED = {"killed", "timeout", "caught by type check"}
# mutmut with room for its trampolines: each call of a mutated function takes three frames instead of one,
# and tests/test_filters.py parses the deepest nesting allowed, which stays within Python's default limit
# of 1,000 frames only without them.
_RUN = "import sys; sys.setrecursionlimit(4000); from mutmut.__main__ import cli; cli()"
_CACHE = type(functools.lru_cache()(len))


def _toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(item)) for item in items) + "]"


def prepare(workdir: Path, module: str, fresh: bool, tests: list[str] | None = None) -> Path:
    """A folder that looks like the checkout (links to it) with this module's [tool.mutmut] settings."""
    mutated, selection = MODULES[module]
    tests = tests or selection
    folder = workdir / module
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name)
    tests = [test for test in tests if (ROOT / test.split("::")[0]).exists()]
    settings = (
        "\n[tool.mutmut]\n"
        f"source_paths = {_toml_list(['imagesearch_pg', 'flask_app'])}\n"
        f"only_mutate = {_toml_list(mutated)}\n"
        f"also_copy = {_toml_list(ALSO_COPY)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        # A fixed seed: a property test kills a mutant on every run or on none. This module, as a pytest
        # plugin, empties the project's caches as each session starts (pytest_sessionstart below).
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "--hypothesis-seed=0", "-p", "tests.mutation"]\n'
        "use_git_change_detection = false\n"
        # mutmut's time limit, (tests' time + constant) x multiplier x 2 seconds, counts the tests' own time,
        # not their fixtures' (a test session with the database takes seconds to set up): without this
        # margin a slow survivor reads as a timeout, a kill; a hung mutant still ends within minutes.
        "timeout_constant = 30.0\n"
        "timeout_multiplier = 1.5\n"
    )
    (folder / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + settings)
    return folder


def results(folder: Path, module: str) -> tuple[dict[str, str], list[str]]:
    """Each mutant's status, and how each survivor reads (mutmut show)."""
    from mutmut.stats import status_by_exit_code

    status_of = {}
    for path in MODULES[module][0]:
        meta = json.loads((folder / "mutants" / (path + ".meta")).read_text())
        for name, code in meta["exit_code_by_key"].items():
            status_of[name] = status_by_exit_code[code]
    shown = []
    for name, status in sorted(status_of.items()):
        if status not in KILLED and status != "not checked":
            diff = subprocess.run([_mutmut(), "show", name], cwd=folder, capture_output=True, text=True).stdout
            shown.append(f"{status}: {diff}")
    return status_of, shown


def _mutmut() -> str:
    return str(Path(sys.executable).parent / "mutmut")


def pytest_sessionstart(session) -> None:
    """Each mutant's tests run in a process forked from mutmut's, which has run the whole selection once:
    without this, they would inherit its caches (filters._parse remembers every filter it parsed, so a
    mutant of the parser would never run for them, and picture_search keeps the statements to_sql built)."""
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in ("imagesearch_pg", "flask_app"):
            for value in list(vars(module).values()):
                if type(value) is _CACHE:  # type(), not isinstance(): Flask's proxies raise outside a request
                    value.cache_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imagesearch-mutation"))
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--tests", nargs="+", help="test files or ids to use instead of the module's selection")
    parser.add_argument("--mutants", nargs="+", default=[], help="test only these mutants (names from mutmut)")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown modules {sorted(unknown)}; the modules are {', '.join(MODULES)}")
    args.modules = args.modules or list(MODULES)
    if not Path(_mutmut()).exists():
        sys.exit("mutmut is not installed: .venv/bin/pip install mutmut==3.8.1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    if not environment.get("IMAGESEARCH_DATABASE_URL"):
        from imagesearch_pg.store import embedded

        server = embedded.start_embedded_server(args.workdir / "pgdata")  # stopped as this process ends
        environment["IMAGESEARCH_DATABASE_URL"] = server.get_uri()
    failed = False
    for module in args.modules:
        folder = prepare(args.workdir, module, args.fresh, args.tests)
        began = time.monotonic()
        command = [sys.executable, "-c", _RUN, "run", "--max-children", str(args.max_children), *args.mutants]
        run = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
        took = time.monotonic() - began
        if run.returncode != 0:
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n")
            print(f"{module}: mutmut failed (exit {run.returncode})")
            failed = True
            continue
        status_of, shown = results(folder, module)
        checked = [status for status in status_of.values() if status != "not checked"]
        killed = sum(status in KILLED for status in checked)
        lines = [f"{module}: {killed}/{len(checked)} killed = {100 * killed / max(len(checked), 1):.1f} % "
                 f"({len(status_of)} mutants) in {took / 60:.1f} min", *shown]
        (folder / "report.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
