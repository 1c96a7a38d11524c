"""A griffe extension for the docs build: show a parameter's default as its value.

xferkit names its defaults (``timeout=DEFAULT_TIMEOUT``) so each lives in one place; the API
reference should still tell a reader the value (``timeout=10.0``). For every parameter whose
default is a plain name or dotted name of a module-level value, this imports the function's
module and writes ``repr`` of the value instead. Anything it cannot resolve stays as written.
"""

from __future__ import annotations

import importlib
from typing import Any

import griffe

_SHOWN_AS = {"_Default.BUDGET": "RetryBudget()"}  # the client's "a new budget" sentinel


class LiteralDefaults(griffe.Extension):
    """Replace named defaults by the values they name."""

    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        module_path = func.module.path
        for parameter in func.parameters:
            if parameter.annotation is not None and "_Default" in str(parameter.annotation):
                # The sentinel's type is private; the default below says what it means.
                parameter.annotation = str(parameter.annotation).replace(" | _Default", "")
            written = str(parameter.default) if parameter.default is not None else ""
            if not written or not written.replace(".", "").replace("_", "").isalnum():
                continue
            if written[0].isdigit() or written in {"None", "True", "False"}:
                continue
            if written in _SHOWN_AS:
                parameter.default = _SHOWN_AS[written]
                continue
            try:
                value: Any = importlib.import_module(module_path)
                for part in written.split("."):
                    value = getattr(value, part)
            except (ImportError, AttributeError):
                continue
            if isinstance(value, (int, float, str, bool)) or type(value).__name__ in {
                "RetryPolicy",
                "PosixPath",
                "WindowsPath",
            }:
                parameter.default = (
                    repr(str(value)) if type(value).__name__.endswith("Path") else repr(value)
                )
