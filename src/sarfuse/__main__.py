"""``python -m sarfuse``: the same command line as the ``sarfuse`` script."""

from sarfuse.cli import app

app(prog_name="sarfuse")
