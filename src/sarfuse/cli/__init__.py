"""The ``sarfuse`` command line: parse, call the library, report. Errors become one line.

``app`` (in :mod:`sarfuse.cli.app`) holds the reporting; the commands live by theme in
:mod:`.data`, :mod:`.pretraining`, :mod:`.mapping` and :mod:`.workflows`, whose import
registers them (in the order ``sarfuse --help`` lists them).
"""

# the import order is the order of the commands in --help
# isort: off
from sarfuse.cli.app import app
from sarfuse.cli.data import stats, superpixels, synth
from sarfuse.cli.pretraining import pretrain
from sarfuse.cli.mapping import export, map_cmd, map_many_cmd, probe
from sarfuse.cli.workflows import demo, experiment

# isort: on

__all__ = [
    "app", "demo", "experiment", "export", "map_cmd", "map_many_cmd", "pretrain", "probe",
    "stats", "superpixels", "synth",
]  # fmt: skip
