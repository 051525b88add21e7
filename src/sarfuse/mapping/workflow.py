"""``sarfuse probe``: train a classifier on few labelled patches and score it honestly."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from sarfuse.contract import DataContract
from sarfuse.data.dataset import PatchDataset, first_file
from sarfuse.data.indices import DEFAULT_INDICES, available_indices
from sarfuse.data.raster import is_gdal_url
from sarfuse.data.schemes import IGNORE_INDEX
from sarfuse.data.validate import labels_name
from sarfuse.errors import SarfuseError, naming
from sarfuse.io_utils import atomic_write_text
from sarfuse.lock import output_lock
from sarfuse.mapping.decision import confusion_iou, decide, expected_iou, iou_offsets
from sarfuse.mapping.features import (
    TRAINED_ON_SPLIT,
    FeatureKind,
    PatchFeatures,
    feature_columns,
    feature_setup,
)
from sarfuse.mapping.metrics import EDGE_WIDTH, confusion_matrix, edge_mask, scores
from sarfuse.mapping.probe import (
    AUTO_CLASSIFIERS,
    CLASSIFIERS,
    NO_LABELS,
    ClassifierName,
    ForestOptions,
    LinearOptions,
    classifier_options,
    fit_classifier,
    predict_pixels,
    predict_proba,
    save_classifier,
    with_offsets,
)
from sarfuse.mapping.pseudo import rule_labels
from sarfuse.mapping.selection import (
    Candidate,
    CrossValidation,
    check_decision,
    choose,
    cross_validate,
)
from sarfuse.mapping.selftrain import SelfTrainConfig, self_train
from sarfuse.mapping.spatial import BlockSpec, PatchBox, SplitMode, draw_split
from sarfuse.mapping.splits import PatchKey, Split, load_split, save_split
from sarfuse.mapping.supervised import SupervisedConfig, supervised_features
from sarfuse.modelcard import probe_card, write_model_card

__all__ = ["DEFAULT_INDICES", "ProbeConfig", "open_patches", "run_probe"]

FeatureChoice = Literal["auto", "pretrained", "random", "raw", "pretrained+raw", "supervised"]
ClassifierChoice = Literal["auto", ClassifierName]
DecisionRule = Literal["auto", "iou", "argmax"]
# What "auto" chooses among, in order of preference when cross-validation cannot tell (one
# labelled patch): raw bands with a random forest first, the remote-sensing user's baseline
# (the classifiers' order is their auto_rank in CLASSIFIERS).
AUTO_FEATURES: tuple[FeatureKind, ...] = ("raw", "pretrained", "pretrained+raw")


@dataclass
class ProbeConfig:
    labels: int = 10  # labelled patches used for training
    patch_size: int = 64  # scenes are cut into patches of this size; N counts these patches
    seed: int = 0  # draws the split and seeds the classifier
    # auto = chosen by cross-validation over the labelled patches among raw, pretrained and
    # pretrained+raw (raw only without a checkpoint)
    features: FeatureChoice = "auto"
    classifier: ClassifierChoice = "auto"  # auto = chosen by the same cross-validation
    indices: tuple[str, ...] = DEFAULT_INDICES  # spectral indices appended to the features
    # the classifiers' options (defaults and meaning: their entries in CLASSIFIERS)
    epochs: int = LinearOptions.epochs
    lr: float = LinearOptions.lr
    momentum: float = LinearOptions.momentum
    probe_batch: int = LinearOptions.probe_batch
    n_trees: int = ForestOptions.n_trees
    n_eval: int | None = None  # fixed held-out evaluation patches (None: all unlabelled ones)
    max_pixels: int = 500_000  # labelled pixels kept for training (uniform sample)
    cv_folds: int = 4  # folds of whole labelled patches for the automatic choice
    # auto keeps raw bands + random forest unless another setup beats it by this much CV mIoU
    # (measured on the real Sen1Floods11 chips: a plain arg-max over noisy folds loses)
    cv_margin: float = 0.02
    # ... and, when set, on more than half of the folds too (one failed fold of the forest
    # made the chips' worst choices)
    cv_most_folds: bool = True
    # pseudo labels from the scheme's index rules + self-training on unlabelled patches; off by
    # default: on the real chips it rescued a failed split but lowered the others
    self_train: bool = False
    self_training: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    pool_pixels: int = 200_000  # unlabelled candidate pixels drawn for self-training
    # how each pixel's class is decided: iou = arg-max moved by class offsets that raise the
    # IoU expected on the unlabelled patches (mapping/decision.py); argmax = most probable
    # class; auto = iou when the class scheme names a target class (water), else argmax
    decision: DecisionRule = "auto"
    decision_pixels: int = 50_000  # unlabelled pixels drawn to choose the offsets
    # keep the IoU decision only if it does not lower the IoU on the CV folds' held-out patches
    # (off: on the real chips it dropped as many good decisions as bad; benchmarks in README)
    decision_check: bool = False
    supervised_steps: int = SupervisedConfig.steps  # Adam steps of the supervised baseline
    # random: evaluation patches anywhere else; blocks: in other blocks of the scene, a buffer
    # away from the training blocks (see mapping/spatial.py)
    split_mode: SplitMode = "random"
    block_size: int | None = None  # blocks: block side in pixels (None = 4 patches)
    buffer: int | None = None  # blocks: gap in pixels kept free around them (None = 1 patch)
    split_file: str | None = None  # reuse this saved split.json (matched by file and window)
    device: str = "cpu"
    # added to S2 values of files that do not state their offset (bare GeoTIFFs); None = 0
    s2_offset: float | None = None
    extra: dict = field(default_factory=dict)


def open_patches(source, contract: DataContract | dict, cfg: ProbeConfig) -> PatchDataset:
    """``source`` as ``contract``'s network reads it (or as a probe's metadata stores the
    contract), in ``cfg``'s patches, with ``cfg``'s indices that the data's sensors allow."""
    return DataContract.coerce(contract).open_patches(
        source,
        patch_size=cfg.patch_size,
        indices=available_indices(cfg.indices, source.sensors),
    )


def patch_labels(patches: PatchDataset, progress: bool = True) -> list:
    """The label array (P, P) of every patch (one read pass), for drawing splits."""
    if not patches.source.has_labels:
        raise SarfuseError(patches.source.root, "the probe needs labels, and this data has none")
    return [
        patches[i]["label"].numpy()
        for i in tqdm(range(len(patches)), desc="labels", disable=not progress, leave=False)
    ]


def patch_boxes(patches: PatchDataset) -> list[PatchBox]:
    """(scene, row, col, height, width) of every patch, for spatial splits."""
    return [
        (i, int(w.row_off), int(w.col_off), int(w.height), int(w.width)) for i, w in patches.patches
    ]


def patch_keys(patches: PatchDataset) -> list[PatchKey]:
    """(file, window) of every patch; the file relative to the data's root where it lies inside."""
    root = Path(patches.source.root).resolve()
    names = []
    for sample in patches.source.samples:
        file = str(first_file(sample))
        local = Path(file).resolve() if not is_gdal_url(file) else None
        inside = local is not None and local.is_relative_to(root)
        names.append(local.relative_to(root).as_posix() if inside else file)
    return [(names[s], (r, c, h, w)) for s, r, c, h, w in patch_boxes(patches)]


def block_spec(cfg: ProbeConfig) -> BlockSpec:
    """The blocks of ``cfg``: 4 patches a side and a one-patch buffer unless set."""
    block = cfg.block_size if cfg.block_size is not None else 4 * cfg.patch_size
    return BlockSpec(block, cfg.buffer if cfg.buffer is not None else cfg.patch_size)


def split_info(cfg: ProbeConfig) -> dict:
    """How a split was drawn, saved beside it."""
    spec = block_spec(cfg)
    info = {"mode": cfg.split_mode, "seed": cfg.seed, "patch_size": cfg.patch_size}
    if cfg.split_file:
        info["reused_from"] = str(cfg.split_file)
    elif cfg.split_mode == "blocks":
        info.update(block_size=spec.block, buffer=spec.buffer)
    return info


def evaluate(
    clf, features: PatchFeatures, indices, num_classes: int, columns: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Confusion matrices of ``clf`` over the patches ``indices`` (streamed in batches): all
    pixels, and those within ``EDGE_WIDTH`` px of a class edge of the labels."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    cm_edge = torch.zeros_like(cm)
    for feats, labels in features.batches(indices):
        feats = feats if columns is None else feats[:, columns]
        pred = predict_proba(clf, feats).argmax(1)
        cm += confusion_matrix(pred, labels, num_classes)
        edges = torch.from_numpy(edge_mask(labels.numpy(), EDGE_WIDTH))
        cm_edge += confusion_matrix(pred, labels, num_classes, mask=edges)
    return cm, cm_edge


@dataclass
class PixelSet:
    """Pixels gathered from patches: features (P, C), labels (P,), patch ids (P,), positions."""

    x: torch.Tensor
    y: torch.Tensor
    patch: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor


def gather_pixels(
    features: PatchFeatures, indices: list[int], per_patch: int | None, seed: int, labelled: bool
) -> PixelSet:
    """Pixels of the patches ``indices``: every labelled one (``labelled``), or up to
    ``per_patch`` valid ones drawn at random from each patch (unlabelled candidates)."""
    gen = torch.Generator().manual_seed(seed)
    parts: list[tuple[torch.Tensor, ...]] = []
    order = iter(indices)
    for feats, labels, valid in features.batches_with_valid(indices):
        for f, lab, ok in zip(feats, labels, valid, strict=True):
            pid = next(order)
            keep = (lab != IGNORE_INDEX) if labelled else (ok & torch.isfinite(f).all(0))
            rows, cols = torch.nonzero(keep, as_tuple=True)
            if per_patch is not None and len(rows) > per_patch:
                pick = torch.randperm(len(rows), generator=gen)[:per_patch]
                rows, cols = rows[pick], cols[pick]
            ids = torch.full((len(rows),), pid, dtype=torch.int64)
            parts.append((f[:, rows, cols].T.float(), lab[rows, cols], ids, rows, cols))
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64)
        return PixelSet(torch.zeros(0, 0), empty, empty, empty, empty)
    return PixelSet(*(torch.cat(column) for column in zip(*parts, strict=True)))


def _candidates(cfg: ProbeConfig, maker_kind: str, dims: tuple[int, int, int]) -> list[Candidate]:
    """The (features, classifier) setups the probe may use, with their columns in the features."""
    kinds = [cfg.features] if cfg.features != "auto" else list(AUTO_FEATURES)
    if maker_kind != "pretrained+raw":
        kinds = [maker_kind]
    classifiers = [cfg.classifier] if cfg.classifier != "auto" else list(AUTO_CLASSIFIERS)
    out = []
    for kind in kinds:  # pretrained+raw features hold every kind's columns; others only their own
        if maker_kind == "pretrained+raw":
            cols = tuple(feature_columns(kind, *dims))
        else:
            cols = tuple(range(sum(dims)))
        out += [Candidate(kind, cols, c) for c in classifiers]
    return out


def _feature_dims(features: PatchFeatures) -> tuple[int, int, int]:
    """(network, raw-band, index) channel counts of the features' layout."""
    patches, net = features.patches, features.maker.net
    raw = len(patches.s1_bands) + len(patches.s2_bands)
    net_dim = net.feature_dim if net is not None else 0
    raw_dim = raw if features.maker.kind in ("raw", "pretrained+raw") else 0
    return net_dim, raw_dim, len(patches.indices)


def _maker_kind(cfg: ProbeConfig, checkpoint) -> FeatureKind:
    if cfg.features == "auto":
        return "pretrained+raw" if checkpoint is not None else "raw"
    return cfg.features


def fitter(cfg: ProbeConfig, num_classes: int, n_patches: int):
    """``fit(name, x, y, weights)`` training classifier ``name`` with ``cfg``'s options."""
    return lambda name, x, y, weights: fit_classifier(
        name, x, y, num_classes, weights, cfg, n_patches
    )


def _choose(cfg, candidates, labelled: PixelSet, fit, k) -> tuple[Candidate, CrossValidation]:
    """The candidate chosen by cross-validation on the labelled patches (or the only one)."""
    if len(candidates) == 1:
        return candidates[0], CrossValidation({}, {})
    cv = cross_validate(
        candidates, labelled.x, labelled.y, labelled.patch, k, fit, cfg.cv_folds, cfg.seed
    )
    return choose(candidates, cv, cfg.cv_margin, cfg.cv_most_folds), cv


def _train(cfg, chosen, labelled, features, split, fit, scheme, out) -> tuple[object, dict]:
    """Fit the chosen setup, with self-training on the unlabelled patches when enabled."""
    cols = list(chosen.columns)
    train = lambda x, y, w: fit(chosen.classifier, x, y, w)  # noqa: E731
    pool = _pool(features, split)
    if not cfg.self_train or not pool:
        note = {"enabled": cfg.self_train, "unlabelled_patches": len(pool)}
        return train(labelled.x[:, cols], labelled.y, None), note
    per_patch = max(1, cfg.pool_pixels // len(pool))
    cand = gather_pixels(features, pool, per_patch, cfg.seed, labelled=False)
    n_idx = len(features.patches.indices)
    index_values = cand.x[:, cand.x.shape[1] - n_idx :].numpy()
    rules = rule_labels(index_values, features.patches.indices, scheme)
    truth = cand.y.numpy()  # labels of pool patches, if any: reported, never trained on
    result = self_train(
        train, labelled.x[:, cols], labelled.y, cand.x[:, cols], rules, cfg.self_training,
        cfg.seed, truth,
    )  # fmt: skip
    _plot_pseudo(features, cand, result.pseudo, scheme, out)
    note = {"enabled": True, "unlabelled_patches": len(pool), "candidates": len(cand.y)}
    note["rounds"] = result.rounds
    return result.classifier, note


def _pool(features: PatchFeatures, split: Split) -> list[int]:
    """The unlabelled patches: neither trained on nor evaluated (evaluation pixels are never
    used, not even unlabelled)."""
    busy = set(split.train) | set(split.eval)
    return [i for i in range(len(features.patches)) if i not in busy]


def _decide(cfg: ProbeConfig, clf, chosen: Candidate, features, split, scheme, labelled, fit):
    """``clf`` with the decision of ``cfg.decision``, and what was decided (for metrics.json)."""
    target = scheme.target_index
    rule = cfg.decision
    if rule == "auto":
        rule = "iou" if target is not None else "argmax"
    note: dict = {"rule": rule, "target": scheme.target or "mean IoU"}
    pool = _pool(features, split)
    if rule == "argmax" or not pool:
        reason = {} if rule == "argmax" else {"reason": "no unlabelled patches"}
        return clf, {**note, "rule": "argmax", **reason}
    per_patch = max(1, cfg.decision_pixels // len(pool))
    cand = gather_pixels(features, pool, per_patch, cfg.seed, labelled=False)
    proba = predict_pixels(clf, cand.x[:, list(chosen.columns)]).double()
    offsets = iou_offsets(proba, target)
    before = expected_iou(proba, proba.argmax(1), target)
    after = expected_iou(proba, decide(proba, offsets), target)
    note.update(offsets=[round(float(b), 4) for b in offsets], pixels=len(cand.y))
    note.update(expected_iou_argmax=round(before, 4), expected_iou=round(after, 4))
    if cfg.decision_check:
        k = len(scheme.classes)
        checked = check_decision(
            chosen, labelled.x, labelled.y, labelled.patch, cand.x, k, target, fit,
            cfg.cv_folds, cfg.seed,
        )  # fmt: skip
        if checked is not None:
            plain, moved = (confusion_iou(cm, target) for cm in checked)
            note["check"] = {"cv_iou_argmax": round(plain, 4), "cv_iou": round(moved, 4)}
            if moved < plain:
                return clf, {**note, "rule": "argmax", "reason": "lowered the CV IoU"}
    return with_offsets(clf, offsets), note


def _plot_pseudo(features, cand: PixelSet, rounds, scheme, out: Path) -> None:
    """One small PNG per round: the pseudo labels on the first scene (others are left out)."""
    from sarfuse.plots import plot_map_quicklook

    shape = features.patches.scene_shapes[0]
    first = torch.tensor([features.patches.patches[int(p)][0] == 0 for p in cand.patch.tolist()])
    if not first.any():
        return
    windows = [features.patches.patches[int(p)][1] for p in cand.patch[first].tolist()]
    rows = cand.row[first].numpy() + np.array([int(w.row_off) for w in windows])
    cols = cand.col[first].numpy() + np.array([int(w.col_off) for w in windows])
    for r, pseudo in enumerate(rounds):
        canvas = np.full(shape, IGNORE_INDEX, dtype=np.int64)
        canvas[rows, cols] = pseudo[first.numpy()]
        plot_map_quicklook(
            canvas, [c.color for c in scheme.classes], list(scheme.names),
            out / f"pseudo_round{r}.png", title=f"pseudo labels, round {r}",
        )  # fmt: skip


def run_probe(
    source,
    out: str | Path,
    cfg: ProbeConfig,
    checkpoint: str | Path | None = None,
    split: Split | None = None,
    labels: list | None = None,
    progress: bool = True,
    features: PatchFeatures | None = None,
) -> dict:
    """Train a classifier on ``cfg.labels`` patches and evaluate it; write PROBE_DIR.

    With ``auto`` the features and classifier are chosen by cross-validation over the labelled
    patches; with ``self_train`` the chosen setup is then self-trained on unlabelled patches.
    ``split``, ``labels`` and cached ``features`` may be passed in (the experiment and
    benchmarks reuse them). The probe folder is locked while it is written.
    """
    out = Path(out)
    with output_lock(out):
        scheme = source.scheme
        if scheme is None or not source.has_labels:
            raise SarfuseError(source.root, "the probe needs labels, and this data has none")
        maker, contract = feature_setup(
            _maker_kind(cfg, checkpoint), source, checkpoint, cfg.seed, cfg.device
        )
        if features is None:
            features = PatchFeatures(open_patches(source, contract, cfg), maker)
        split = _the_split(source, cfg, features.patches, split, labels, progress, out)
        if cfg.features in TRAINED_ON_SPLIT:  # a network trained on the labelled patches only
            features = _trained_on_split(cfg, features, split, len(scheme.classes), contract)
        torch.manual_seed(cfg.seed)
        labelled = _training_pixels(features, split, cfg, source.root)
        fit = fitter(cfg, len(scheme.classes), len(split.train))
        chosen, cv, clf, st_note = _fit(cfg, features, split, labelled, scheme, fit, out)
        clf, decision = _decide(cfg, clf, chosen, features, split, scheme, labelled, fit)
        cm, cm_edge = evaluate(clf, features, split.eval, len(scheme.classes), list(chosen.columns))
        cms = (cm, cm_edge)
        result = _result(cfg, scheme, features.patches.indices, split, chosen, cv, st_note, cms)
        result["decision"] = decision
        result["checkpoint"] = None if checkpoint is None else str(checkpoint)
        _write_probe(out, source, cfg, clf, contract, chosen, result, cm, checkpoint)
        return result


def _trained_on_split(cfg: ProbeConfig, features, split: Split, k: int, contract) -> PatchFeatures:
    """Features of a network trained on the split's labelled patches only (the supervised
    baseline)."""
    net_cfg = SupervisedConfig(steps=cfg.supervised_steps)
    return supervised_features(
        features.patches, split.train, k, contract, cfg.seed, cfg.device, net_cfg
    )


def _the_split(source, cfg: ProbeConfig, patches, split, labels, progress, out: Path) -> Split:
    """The split given, else the one of ``cfg.split_file``, else a fresh one; saved in ``out``."""
    keys = patch_keys(patches)
    if split is None and cfg.split_file:
        split = load_split(cfg.split_file, keys)
    if split is None:
        labels = labels if labels is not None else patch_labels(patches, progress)
        with naming(labels_name(source)):
            split = draw_split(
                labels, patch_boxes(patches), cfg.labels, cfg.seed, cfg.split_mode,
                block_spec(cfg), cfg.n_eval, len(source.scheme.classes),
            )  # fmt: skip
    save_split(out / "split.json", split, keys, split_info(cfg))
    return split


def _training_pixels(features: PatchFeatures, split: Split, cfg: ProbeConfig, root) -> PixelSet:
    """Every labelled pixel of the training patches, a uniform sample of ``cfg.max_pixels``
    when there are more."""
    labelled = gather_pixels(features, split.train, None, cfg.seed, labelled=True)
    if len(labelled.y) == 0:
        raise SarfuseError(root, NO_LABELS)
    if len(labelled.y) > cfg.max_pixels:
        keep = torch.randperm(len(labelled.y), generator=torch.Generator().manual_seed(cfg.seed))
        labelled = PixelSet(*(t[keep[: cfg.max_pixels]] for t in vars(labelled).values()))
    return labelled


def _fit(cfg: ProbeConfig, features, split: Split, labelled: PixelSet, scheme, fit, out: Path):
    """The chosen candidate, the cross-validation scores, the trained classifier and the
    self-training note."""
    k = len(scheme.classes)
    candidates = _candidates(cfg, features.maker.kind, _feature_dims(features))
    chosen, cv = _choose(cfg, candidates, labelled, fit, k)
    clf, st_note = _train(cfg, chosen, labelled, features, split, fit, scheme, out)
    return chosen, cv, clf, st_note


def _result(cfg, scheme, indices, split, chosen, cv, st_note, cms) -> dict:
    """The probe's metrics.json (but the checkpoint): scores and how they were obtained;
    ``cms`` holds the confusion matrices of all pixels and of those near class edges."""
    cm, cm_edge = cms
    result = scores(cm, [c.name for c in scheme.classes])
    result.update(
        features=chosen.features,
        classifier=chosen.classifier,
        feature_dim=len(chosen.columns),
        selection={
            "cv_miou": cv.miou,
            "cv_fold_miou": cv.folds,
            "chosen": chosen.name,
            "folds": cfg.cv_folds,
            "margin": cfg.cv_margin,
            "most_folds": cfg.cv_most_folds,
        },  # fmt: skip
        self_training=st_note,
        edge=_edge_scores(cm, cm_edge),
        labelled_patches=len(split.train),
        eval_patches=len(split.eval),
        patch_size=cfg.patch_size,
        seed=cfg.seed,
        indices=list(indices),
    )
    return result


def _write_probe(out, source, cfg, clf, contract, chosen, result, cm, checkpoint) -> None:
    """PROBE_DIR: the classifier with what mapping needs, model card, metrics, config, plot."""
    from sarfuse.plots import plot_confusion

    scheme = source.scheme
    meta = {
        "features": chosen.features,
        "indices": list(result["indices"]),
        "contract": contract.to_dict(),
        "checkpoint": None if checkpoint is None else str(Path(checkpoint).resolve()),
        "scheme": scheme.to_json(),
        "seed": cfg.seed,
        "probe_loss": getattr(clf, "history", []),  # linear probe: mean loss per epoch
    }
    save_classifier(out / "probe.pt", clf, meta)
    options = asdict(classifier_options(chosen.classifier, cfg))
    training = {"loss": CLASSIFIERS[chosen.classifier].loss, **options}
    write_model_card(out, probe_card(source, contract, meta, result, training))
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2))
    plot_confusion(cm.numpy(), [c.name for c in scheme.classes], out / "confusion.png")


def _edge_scores(cm: torch.Tensor, cm_edge: torch.Tensor) -> dict:
    """Error rates within ``EDGE_WIDTH`` px of a class edge and further inside."""
    inner = cm - cm_edge

    def error(m: torch.Tensor) -> float | None:
        total = int(m.sum())
        return None if total == 0 else 1.0 - float(m.diag().sum()) / total

    return {"width": EDGE_WIDTH, "edge_error": error(cm_edge), "interior_error": error(inner),
            "edge_pixels": int(cm_edge.sum()), "interior_pixels": int(inner.sum())}  # fmt: skip
