"""The ``xferkit`` command: a thin entry point that explains a missing ``cli`` extra."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Run the command line, or say how to install it instead of printing a traceback."""
    try:
        from ._app import app  # noqa: PLC0415 - click and rich are an optional extra
    except ImportError as exc:
        sys.stderr.write(f"xferkit's command line needs {exc.name}: pip install 'xferkit[cli]'\n")
        sys.exit(2)
    app()
