"""The package's metadata agrees with the code, the LICENSE file and the Pythons CI tests."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import xferkit

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(xferkit.__file__).resolve().parent


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _nox_pythons() -> list[str]:
    """The ``PYTHONS`` list of noxfile.py, read without importing nox."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "PYTHONS" for target in node.targets
        ):
            pythons: list[str] = ast.literal_eval(node.value)
            return pythons
    raise AssertionError("noxfile.py has no PYTHONS list")


def test_the_dev_extra_and_the_dev_group_list_the_same_requirements() -> None:
    """The ``dev`` extra, kept for the README's command, repeats the ``dev`` group exactly."""
    project = _pyproject()
    assert project["project"]["optional-dependencies"]["dev"] == project["dependency-groups"]["dev"]


def test_bench_is_a_group_and_not_an_extra() -> None:
    """The benchmark tools are a dependency group, not something a user installs as an extra."""
    project = _pyproject()
    assert "bench" in project["dependency-groups"]
    assert "bench" not in project["project"]["optional-dependencies"]


def test_the_classifiers_name_every_python_the_tests_run_on() -> None:
    """The version classifiers are exactly the Pythons nox's ``tests`` session runs on."""
    project = _pyproject()["project"]
    classified = [
        classifier.rsplit(" :: ", 1)[1]
        for classifier in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
    ]
    pythons = _nox_pythons()
    assert classified == pythons
    assert project["requires-python"] == f">={pythons[0]}"


def test_the_installed_version_is_the_package_version() -> None:
    """The distribution's version is read from ``xferkit.__version__``, its one source."""
    assert "version" in _pyproject()["project"]["dynamic"]
    assert importlib.metadata.version("xferkit") == xferkit.__version__


def test_the_license_file_matches_the_metadata() -> None:
    """LICENSE holds the text of the license pyproject.toml names."""
    assert _pyproject()["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")


def test_only_xferkit_testing_imports_h11() -> None:
    """h11 is imported by ``xferkit.testing`` alone, which is why only its extra lists it."""
    importers = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "h11" for name in names):
                importers.add(source.relative_to(PACKAGE).parts[0])
    assert importers == {"testing"}
    project = _pyproject()["project"]
    assert not any(dep.startswith("h11") for dep in project["dependencies"])
    assert project["optional-dependencies"]["testing"] == ["h11>=0.14"]
