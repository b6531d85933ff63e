"""``python -m recctl``: the same command line as the ``recctl`` script."""

from __future__ import annotations

from recctl.cli.main import app

if __name__ == "__main__":
    # the name shell completion and usage lines use, whatever the interpreter path
    app(prog_name="recctl")
