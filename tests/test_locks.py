"""The library, not only the CLI, locks what it writes: a probe folder and an experiment folder
that another live run is writing are refused before anything in them changes; a lock this process
already holds nests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sarfuse.errors import SarfuseError
from sarfuse.lock import lock_path, output_lock
from sarfuse.mapping.workflow import ProbeConfig, run_probe
from sarfuse.runtime import resolve_source


def _held_by_parent(folder: Path) -> Path:
    """Mark ``folder`` as written by another live process (our parent)."""
    lock = lock_path(folder, folder=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getppid()}))
    return lock


def test_a_lock_this_process_holds_nests(tmp_path: Path) -> None:
    with output_lock(tmp_path / "run") as outer:
        with output_lock(tmp_path / "run") as inner:
            assert inner == outer and outer.exists()
        assert outer.exists()  # the inner block does not release the outer one's lock
    assert not outer.exists()


def test_run_probe_refuses_a_folder_another_run_writes(synthetic, tmp_path: Path) -> None:
    out = tmp_path / "probe"
    lock = _held_by_parent(out)
    (out / "metrics.json").write_text("theirs")
    source = resolve_source(synthetic())
    with pytest.raises(SarfuseError, match="another sarfuse run"):
        run_probe(source, out, ProbeConfig(labels=2, features="raw", classifier="linear"))
    assert (out / "metrics.json").read_text() == "theirs" and lock.exists()


def test_an_experiment_refuses_a_folder_another_run_writes(synthetic, tmp_path: Path) -> None:
    from sarfuse.experiment import ExperimentConfig, run_experiment_config

    out = tmp_path / "experiment"
    _held_by_parent(out)
    (out / "config.yaml").write_text("theirs")
    with pytest.raises(SarfuseError, match="another sarfuse run"):
        run_experiment_config(synthetic(), out, ExperimentConfig())
    assert (out / "config.yaml").read_text() == "theirs"  # their config is not overwritten
