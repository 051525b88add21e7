"""``run_probe`` end to end on a tiny generated dataset: the probe folder, every feature kind,
both classifiers, data without labels, and a split reused from its file."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from sarfuse.data.layouts import DataSource, discover
from sarfuse.errors import SarfuseError
from sarfuse.mapping.probe import OffsetClassifier, load_classifier
from sarfuse.mapping.splits import Split, load_split, save_split
from sarfuse.mapping.workflow import DEFAULT_INDICES, ProbeConfig, run_probe
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

TINY = PretrainConfig(crop=16, batch=4, width=4, feat_dim=8, steps=2, patch_size=64, device="cpu")
FAST = ProbeConfig(
    labels=3, patch_size=64, epochs=3, features="raw", classifier="linear", self_train=False
)
FILES = ("metrics.json", "confusion.png", "probe.pt", "split.json", "config.json")


@pytest.fixture(scope="module")
def data(synthetic) -> Path:
    """One 256 x 256 DFC2020-style sample: 16 patches of 64 pixels (shared, read only)."""
    return synthetic(size=256, seed=0)


@pytest.fixture(scope="module")
def checkpoint(data: Path, tmp_path_factory) -> Path:
    """A tiny intermediate-fusion network (feature size 8) pretrained for two steps."""
    root = tmp_path_factory.mktemp("probe-run")
    with pytest.MonkeyPatch.context() as mp:  # module fixtures run outside the autouse cache one
        mp.setenv("SARFUSE_CACHE", str(root / "cache"))
        return pretrain(data, root / "run", TINY, progress=False).checkpoint


@pytest.fixture(scope="module")
def source(data: Path) -> DataSource:
    return discover(data)


@pytest.fixture(scope="module")
def raw_probe(source: DataSource, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("raw-probe")
    return out, run_probe(source, out, FAST, progress=False)


def test_raw_linear_probe_writes_the_probe_folder(raw_probe: tuple[Path, dict]) -> None:
    out, result = raw_probe
    for name in FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result))
    for key in ("OA", "AA", "kappa", "mIoU"):
        assert -1.0 <= metrics[key] <= 1.0, key
    assert 0.0 <= metrics["OA"] <= 1.0 and 0.0 <= metrics["mIoU"] <= 1.0
    assert set(metrics["per_class"]) <= {
        "Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands",
        "Urban/Built-up", "Snow/Ice", "Barren", "Water",
    }  # fmt: skip
    assert metrics["per_class"] and all("iou" in v for v in metrics["per_class"].values())
    assert (metrics["features"], metrics["classifier"]) == ("raw", "linear")
    assert metrics["labelled_patches"] == 3
    assert metrics["indices"] == list(DEFAULT_INDICES)


def test_split_and_config_are_saved(raw_probe: tuple[Path, dict]) -> None:
    out, result = raw_probe
    split = load_split(out / "split.json")
    assert len(split.train) == 3
    assert not set(split.train) & set(split.eval)
    assert len(split.train) + len(split.eval) <= 16 and len(split.eval) == result["eval_patches"]
    config = json.loads((out / "config.json").read_text())
    assert config == json.loads(json.dumps(asdict(FAST)))


def test_raw_probe_reads_bands_and_indices(raw_probe: tuple[Path, dict]) -> None:
    """Raw features: VV, VH, the 12 S2 bands but cirrus B10, and the 4 default indices."""
    out, _ = raw_probe
    clf, meta = load_classifier(out / "probe.pt")
    assert clf.kind == "linear"
    assert clf.in_channels == 2 + 12 + len(DEFAULT_INDICES)
    assert clf.num_classes == 10
    assert meta["features"] == "raw" and meta["checkpoint"] is None
    assert len(meta["probe_loss"]) == FAST.epochs  # the linear probe's loss per epoch
    assert "B10" not in meta["contract"]["s2_bands"]


def test_same_seed_same_result(source: DataSource, raw_probe, tmp_path: Path) -> None:
    _, first = raw_probe
    again = run_probe(source, tmp_path, FAST, progress=False)
    assert again["mIoU"] == pytest.approx(first["mIoU"], abs=1e-6)
    assert again["confusion"] == first["confusion"]


def test_random_forest_classifier(source: DataSource, tmp_path: Path) -> None:
    cfg = replace(FAST, classifier="rf", max_pixels=3000)
    result = run_probe(source, tmp_path, cfg, progress=False)
    clf, _ = load_classifier(tmp_path / "probe.pt")
    assert clf.kind == "rf" and result["classifier"] == "rf"
    assert result["OA"] > 0.3  # the synthetic classes are spectrally distinct
    for name in FILES:
        assert (tmp_path / name).is_file(), name


@pytest.mark.parametrize("kind", ["pretrained", "random"])
def test_network_features(source: DataSource, checkpoint: Path, kind: str, tmp_path: Path) -> None:
    result = run_probe(source, tmp_path, replace(FAST, features=kind), checkpoint, progress=False)
    clf, meta = load_classifier(tmp_path / "probe.pt")
    assert clf.in_channels == TINY.feat_dim + len(DEFAULT_INDICES)
    assert meta["features"] == kind == result["features"]
    assert meta["checkpoint"] == str(checkpoint.resolve())
    # the default band list, "all", is kept as the bands it named: every S2 band but B10
    assert meta["contract"]["s2_bands"] == [b for b in source.s2_bands() if b != "B10"]
    assert 0.0 <= result["mIoU"] <= 1.0


def test_network_features_need_a_checkpoint(source: DataSource, tmp_path: Path) -> None:
    with pytest.raises(SarfuseError, match="needs a --checkpoint"):
        run_probe(source, tmp_path, replace(FAST, features="pretrained"), None, progress=False)


def test_data_without_labels_is_refused(data: Path, tmp_path: Path) -> None:
    s1, s2 = next(data.glob("s1_*/*.tif")), next(data.glob("s2_*/*.tif"))
    (tmp_path / "samples.csv").write_text(f"s1,s2\n{s1},{s2}\n")
    unlabelled = discover(tmp_path / "samples.csv")
    assert unlabelled.sensors == ("s1", "s2") and not unlabelled.has_labels
    with pytest.raises(SarfuseError, match="needs labels"):
        run_probe(unlabelled, tmp_path / "p", FAST, progress=False)
    assert not (tmp_path / "p" / "probe.pt").exists()


def test_a_given_split_is_reused(source: DataSource, raw_probe, tmp_path: Path) -> None:
    """A split passed in (e.g. read back from another probe's split.json) is used as it is."""
    out, _ = raw_probe
    drawn = load_split(out / "split.json")
    given = Split(train=drawn.eval[:2], eval=drawn.eval[2:] + drawn.train)  # not what seed 0 draws
    save_split(tmp_path / "given.json", given)
    result = run_probe(
        source, tmp_path / "p", FAST, split=load_split(tmp_path / "given.json"), progress=False
    )
    assert load_split(tmp_path / "p" / "split.json") == given
    assert (result["labelled_patches"], result["eval_patches"]) == (2, len(given.eval))


def test_default_probe_chooses_by_cross_validation_and_self_trains(
    source: DataSource, checkpoint: Path, tmp_path: Path
) -> None:
    """The default: six candidates scored by patch folds on the labelled patches only; the
    chosen one is trained with pseudo labels from unlabelled patches outside the eval set."""
    cfg = ProbeConfig(labels=4, patch_size=64, epochs=3, n_trees=10, n_eval=6, self_train=True)
    result = run_probe(source, tmp_path, cfg, checkpoint, progress=False)
    cv = result["selection"]["cv_miou"]
    assert set(cv) == {f"{f}/{c}" for f in ("raw", "pretrained", "pretrained+raw")
                       for c in ("rf", "linear")}  # fmt: skip
    folds = result["selection"]["cv_fold_miou"]
    assert set(folds) == set(cv) and all(len(v) == 4 for v in folds.values())
    best = max(cv, key=lambda k: cv[k])
    most = sum(a > b for a, b in zip(folds[best], folds["raw/rf"], strict=True)) > 2
    expected = best if cv[best] > cv["raw/rf"] + cfg.cv_margin and most else "raw/rf"
    assert result["selection"]["chosen"] == expected
    assert expected == f"{result['features']}/{result['classifier']}"
    dims = {"raw": 2 + 12 + 4, "pretrained": TINY.feat_dim + 4, "pretrained+raw": 8 + 18}
    assert result["feature_dim"] == dims[result["features"]]
    st = result["self_training"]
    assert st["enabled"] and st["unlabelled_patches"] == 16 - 4 - 6
    assert st["rounds"][0]["pseudo_labels"] > 0  # the synthetic water obeys the index rules
    assert (tmp_path / "pseudo_round0.png").is_file()
    assert 0.0 <= result["edge"]["edge_error"] <= 1.0
    split = load_split(tmp_path / "split.json")
    assert len(split.eval) == 6 and not set(split.train) & set(split.eval)
    clf, meta = load_classifier(tmp_path / "probe.pt")
    assert meta["features"] == result["features"] and clf.in_channels == result["feature_dim"]


def test_without_unlabelled_patches_self_training_is_skipped(source, tmp_path) -> None:
    cfg = replace(FAST, self_train=True)  # n_eval None: every other labelled patch evaluates
    result = run_probe(source, tmp_path, cfg, progress=False)
    assert result["self_training"] == {"enabled": True, "unlabelled_patches": 0}


def test_iou_decision_for_the_target_class_is_chosen_on_unlabelled_patches(
    source: DataSource, tmp_path: Path
) -> None:
    """A scheme naming a target class gets the IoU decision by default: offsets chosen on the
    unlabelled patches (never the evaluation ones), saved with the forest in probe.pt."""
    water = replace(source, scheme=replace(source.scheme, target="Water"))
    cfg = replace(FAST, classifier="rf", max_pixels=3000, n_eval=6, decision_pixels=4000)
    result = run_probe(water, tmp_path, cfg, progress=False)
    note = result["decision"]
    assert note["rule"] == "iou" and note["target"] == "Water"
    assert note["pixels"] > 0 and len(note["offsets"]) == len(source.scheme.classes)
    assert note["expected_iou"] >= note["expected_iou_argmax"]
    clf, _ = load_classifier(tmp_path / "probe.pt")
    if any(note["offsets"]):
        assert isinstance(clf, OffsetClassifier)
        assert clf.offsets.tolist() == pytest.approx(note["offsets"], abs=1e-4)
    checked = run_probe(water, tmp_path / "c", replace(cfg, decision_check=True), progress=False)
    cv = checked["decision"]["check"]  # the folds' held-out IoU of water, arg-max vs offsets
    kept = cv["cv_iou"] >= cv["cv_iou_argmax"]
    assert checked["decision"]["rule"] == ("iou" if kept else "argmax")
    assert kept or checked["decision"]["reason"] == "lowered the CV IoU"
    plain = run_probe(water, tmp_path / "argmax", replace(cfg, decision="argmax"), progress=False)
    assert plain["decision"] == {"rule": "argmax", "target": "Water"}
    assert load_split(tmp_path / "split.json") == load_split(tmp_path / "argmax" / "split.json")


def test_auto_decision_is_argmax_without_a_target_class(raw_probe) -> None:
    _, result = raw_probe  # DFC2020 names no target class
    assert result["decision"] == {"rule": "argmax", "target": "mean IoU"}


def test_iou_decision_without_unlabelled_patches_falls_back_to_argmax(source, tmp_path) -> None:
    result = run_probe(source, tmp_path, replace(FAST, decision="iou"), progress=False)
    assert result["decision"]["rule"] == "argmax"
    assert result["decision"]["reason"] == "no unlabelled patches"
