"""The demo's reuse of its own finished pretraining (the whole demo runs in a slow test)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sarfuse.demo import _reusable
from sarfuse.ssl.config import PretrainConfig


def test_the_demo_reuses_only_a_pretraining_done_as_asked(tmp_path: Path) -> None:
    cfg = PretrainConfig(fusion="intermediate", method="pixel", steps=150)
    run = tmp_path / "pretrain"
    run.mkdir()
    cfg.to_json(run / "config.json")
    (run / "done").write_text("ok\n")
    said: list[str] = []
    assert _reusable(run, replace(cfg, device="cpu"), said.append) and run.is_dir()
    assert not said
    assert not _reusable(run, replace(cfg, steps=5), said.append)
    assert not run.exists()  # cleared, so the demo trains it again from scratch
    assert len(said) == 1 and "steps 150 (now 5)" in said[0] and "training it again" in said[0]
