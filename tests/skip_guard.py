"""On CI only the GPU tests may skip: any other skip fails the session, listed by test and reason.

A skip hides a feature from CI as surely as a deleted test, so when the environment variable CI is set, a test
may skip only if it carries the `gpu` marker (it needs a CUDA device, or checks the path taken without one).
Everything else the tests need is installed by `.ci/run`; a skip there means the install failed or a test grew a
new dependency, and both must be fixed, not ignored. Registered from conftest.py as a plugin object, so that a
pytest session run inside a test (the check of this guard) keeps its own list.
"""
from __future__ import annotations

import os

import pytest

ALLOWED_MARKER = "gpu"


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def register(config) -> None:
    """pytest_configure's part: the marker, and a guard of this session's own."""
    config.addinivalue_line("markers", f"{ALLOWED_MARKER}: needs a CUDA device (or checks the path without one); "
                                       "the only tests allowed to skip on CI")
    config.pluginmanager.register(SkipGuard(), "ci-skip-guard")


class SkipGuard:
    def __init__(self) -> None:
        self.forbidden: list[tuple[str, str]] = []

    def _note(self, report) -> None:
        # xfail reports also come out as skipped; they are declared expectations, listed by pytest itself.
        if report.skipped and not hasattr(report, "wasxfail") and ALLOWED_MARKER not in report.keywords:
            self.forbidden.append((report.nodeid, _reason(report)))

    def pytest_runtest_logreport(self, report) -> None:
        self._note(report)

    def pytest_collectreport(self, report) -> None:  # a whole module skipped at import (importorskip at top)
        self._note(report)

    def pytest_sessionfinish(self, session) -> None:
        if os.environ.get("CI") and self.forbidden and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if os.environ.get("CI") and self.forbidden:
            terminalreporter.section("skips not allowed on CI", sep="=", red=True, bold=True)
            for nodeid, reason in self.forbidden:
                terminalreporter.line(f"{nodeid}: {reason}")
            terminalreporter.line(f"{len(self.forbidden)} test(s) skipped for a reason other than a missing GPU; "
                                  "install what they need (.ci/run) or mark them gpu if that is the reason")
