"""Developer sessions: `nox -s tests lint typecheck docs`.

`tests` runs once per Python in `PYTHONS` (`nox -s tests-3.10` for one). nox finds each
interpreter as ``python3.10`` etc. on PATH; `.ci/run` puts pyenv's there.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

# Every Python xferkit supports; the classifiers in pyproject.toml list the same ones
# (tests/unit/test_packaging.py checks).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on one Python (arguments after ``--`` go to pytest)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def interop(session: nox.Session) -> None:
    """ccxt's xt and htx clients against the simulated venues (tests_interop/)."""
    session.install("-e", ".[interop]")
    session.run("pytest", "tests_interop", *session.posargs, env={"CI": "true"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "xferkit")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site; warnings fail the build."""
    session.install("-e", ".[dev]")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark script in benchmarks/ (figures, not pass/fail)."""
    session.install("-e", ".[dev]")
    for script in sorted(Path("benchmarks").glob("*.py")):
        session.run("python", str(script), *session.posargs)
