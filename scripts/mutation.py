"""Mutation testing with mutmut, one module group at a time, each against only its own fast tests.

    python scripts/mutation.py                 # every group
    python scripts/mutation.py schedule stats  # some groups
    python scripts/mutation.py --list          # the groups, their modules and tests

mutmut rewrites each function of the named modules in small ways (a `<` for a `<=`, a constant changed, an
argument dropped) and runs the tests that reach that function; a mutant the tests still pass on ("survived")
is a behaviour no test pins down. Each group runs in a scratch copy of the checkout (the checkout is never
touched), niced, with at most two test processes, so it fits a 2-core machine. Results, per group: killed,
survived, the score (killed / (killed + survived), timeouts counted as killed as mutmut does), and the
surviving mutants' names; `mutmut show NAME` in the printed scratch folder shows a mutant's diff.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# group: (modules to mutate, pytest arguments selecting the fast tests that pin them down)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "schedule": (["deeprecipe/train/schedule.py"],
                 ["tests/test_schedule_units.py", "tests/test_trainer.py", "-k", "schedule_units or schedules_match "
                  "or plateau or plot_schedule or unknown_schedule or warmup_rises or cosine_holds"]),
    "split": (["deeprecipe/data/split.py", "deeprecipe/data/protocols.py"],
              ["tests/test_split_protocols.py", "tests/test_data_basic.py", "-k", "split or protocol or take or resolve"]),
    "stats": (["deeprecipe/data/stats.py"], ["tests/test_stats_units.py"]),
    "losses": (["deeprecipe/train/losses.py", "deeprecipe/train/regularize.py"],
               ["tests/test_losses_regularize.py"]),
    "batchops": (["deeprecipe/data/batchops.py"], ["tests/test_batchops_parity.py"]),
    "checkpoint": (["deeprecipe/train/checkpoint.py"],
                   ["tests/test_checkpoint_units.py", "tests/test_robustness_checkpoints.py", "-k",
                    "not sigkill and not during_training"]),
    "lr_find": (["deeprecipe/recipe/lr_find.py"], ["tests/test_lr_suggestion.py"]),
    "diagnose": (["deeprecipe/train/diagnose.py"],
                 ["tests/test_diagnose_rules.py", "tests/test_diagnosis_corpus.py", "-k", "not held_back"]),
}

# Functions left out of the score, with the reason (their mutants still run, and are listed as excluded).
EXCLUDED = {
    "plot_schedule": "draws the schedule_curve numbers (which are tested); figure size, widths and title text are "
                     "not behaviour a test should pin beyond 'a PNG is written'",
    "plot_lr_find": "draws the result's numbers (which are tested); colours, limits and labels are presentation",
}


def scratch_copy(group: str, modules: list[str], tests: list[str], base: Path, resume: bool = False) -> Path:
    """The checkout's package, tests and pyproject in a fresh folder, with this group's [tool.mutmut].

    With `resume`, a folder mutmut already ran in keeps its package and results (mutmut skips mutants that have
    one); only the tests and the settings are taken afresh from the checkout."""
    work = base / group
    resume = resume and (work / "mutants").is_dir()
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shutil.copytree(ROOT / "deeprecipe", work / "deeprecipe", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("tests", "benchmarks"):  # benchmarks: the diagnosis corpus scorer the diagnose tests use
        shutil.rmtree(work / folder, ignore_errors=True)
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "results"))
    settings = {"source_paths": ["deeprecipe"], "only_mutate": modules, "also_copy": ["benchmarks"],
                "pytest_add_cli_args_test_selection": tests,
                "pytest_add_cli_args": ["-p", "no:cacheprovider", "-x", "-q"],
                # mutmut's default limit (15 × the test time + 1 s) is met by a plain pytest start on a busy
                # shared machine, and a timeout counts as killed: a generous constant keeps the score honest.
                "timeout_constant": 60.0,
                # Each mutant's tests run in a process forked from a server that never ran a torch op, and with
                # one thread (OMP_NUM_THREADS below): a fork of a process whose torch thread pool is running can
                # hang for ever in a futex wait, which is what mutmut's default (fork from the main process) did.
                "process_isolation": "forkserver"}
    toml = "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + toml)
    return work


def _excluded(mutant: str) -> bool:
    return any(f".x_{fn}__mutmut_" in mutant for fn in EXCLUDED)


def _statuses(work: Path, env: dict) -> dict[str, str]:
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                             capture_output=True, text=True).stdout
    status: dict[str, str] = {}
    for line in listing.splitlines():
        m = re.match(r"\s*(\S+):\s*(\w[\w ]*)$", line)
        if m:
            status[m.group(1)] = m.group(2).strip()
    return status


def run_group(group: str, base: Path, children: int, resume: bool = False, recheck: bool = False) -> dict:
    modules, tests = GROUPS[group]
    work = scratch_copy(group, modules, tests, base, resume or recheck)
    # mutmut puts its mutated copy first on sys.path itself; a PYTHONPATH naming that folder before it exists
    # would be cached by the import system as "not there", and the installed package would be tested instead.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # --recheck: run the survivors again (mutmut reruns mutants named on its command line), e.g. after new tests.
    before = _statuses(work, env) if recheck else {}
    names = sorted(n for n, s in before.items() if s == "survived" and not _excluded(n))
    with open(work / "mutmut-run.log", "a" if recheck else "w") as log:  # mutmut's progress and errors
        subprocess.run(["nice", sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *names],
                       cwd=work, env=env, check=False, stdout=log, stderr=subprocess.STDOUT)
    status = _statuses(work, env)
    # mutmut forgets the results of mutants whose functions new tests reach; tests were only added since, so a
    # mutant killed before is still killed: keep that result rather than report it as not run.
    status = {n: before[n] if s == "not checked" and before.get(n) in ("killed", "timeout") else s
              for n, s in status.items()}
    excluded = sorted(n for n in status if _excluded(n))
    status = {n: s for n, s in status.items() if n not in excluded}
    killed = sum(s in ("killed", "timeout") for s in status.values())
    timeouts = sorted(n for n, s in status.items() if s == "timeout")
    survived = sorted(n for n, s in status.items() if s == "survived")
    other = sorted(f"{n} ({s})" for n, s in status.items() if s not in ("killed", "timeout", "survived"))
    score = killed / max(1, killed + len(survived))
    return {"group": group, "modules": modules, "killed": killed, "survived": len(survived), "score": round(score, 3),
            "surviving": survived, "timeouts": timeouts, "excluded": len(excluded), "not_run": other, "folder": str(work)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("groups", nargs="*", help=f"some of: {', '.join(GROUPS)} (default: all)")
    ap.add_argument("--list", action="store_true", help="print the groups and exit")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "deeprecipe-mutation",
                    help="scratch folder for the copies (default: %(default)s)")
    ap.add_argument("--children", type=int, default=2, help="parallel test processes (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--recheck", action="store_true",
                    help="run a finished group's surviving mutants again against the checkout's current tests "
                         "(for tests added since: mutants killed before keep that result)")
    ap.add_argument("--resume", action="store_true",
                    help="continue a stopped run in its scratch folder (results kept, the current tests copied in)")
    args = ap.parse_args(argv)
    if args.list:
        for name, (modules, tests) in GROUPS.items():
            print(f"{name}: {' '.join(modules)}  ←  pytest {' '.join(tests)}")
        return 0
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        print(f"unknown group(s) {unknown}; choose from {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    results = []
    for group in args.groups or list(GROUPS):
        r = run_group(group, args.work, args.children, args.resume, args.recheck)
        results.append(r)
        print(f"{group}: {r['killed']} killed, {r['survived']} survived, score {r['score']:.0%}"
              + (f" ({len(r['timeouts'])} by timeout)" if r["timeouts"] else "")
              + (f"; not run: {len(r['not_run'])}" if r["not_run"] else "")
              + (f"; {r['excluded']} in excluded plot functions" if r["excluded"] else "") + f"  ({r['folder']})", flush=True)
        for name in r["surviving"]:
            print(f"  survived: {name}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
