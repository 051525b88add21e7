"""Model cards: what a checkpoint or a probe is, for whoever finds the file later.

Next to every pretraining checkpoint and every probe go ``MODEL_CARD.md`` (to read) and
``model_card.json`` (the same facts, for tools): the data it was trained on, sensors and bands,
normalisation, training steps and loss, scores where they were measured, limits, licence and
citation. Both are rendered from one dictionary, so they cannot disagree.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sarfuse import __version__
from sarfuse.contract import DataContract
from sarfuse.data.layouts import DataSource
from sarfuse.data.normalise import PAPER_STATS
from sarfuse.io_utils import atomic_write_text

CARD_MD, CARD_JSON = "MODEL_CARD.md", "model_card.json"
CITATION = (
    "Chen, Y. and Bruzzone, L. (2022). Self-supervised SAR-optical data fusion and land-cover "
    "mapping using Sentinel-1/-2 images. IEEE Transactions on Geoscience and Remote Sensing. "
    "arXiv:2103.05543"
)
LICENCE = (
    "sarfuse code: MIT. The weights are derived from the training data: its licence and "
    "attribution terms apply to them too."
)
INPUT_UNITS = {"s1": "backscatter in dB (linear power is converted)", "s2": "reflectance x 10000"}
LIMITS = [
    "Trained on the data listed here only; other regions, seasons, sensors' processing levels "
    "or class schemes need checking against labels before use.",
    "S1 must be terrain-corrected backscatter on the same grid as S2; S2 reflectance x 10000.",
    "Pixels where any input is nodata or NaN are not classified.",
]


def _data(source: DataSource) -> dict[str, Any]:
    return {
        "root": str(source.root),
        "layout": source.layout,
        "samples": len(source.samples),
        "labels": None if source.scheme is None else source.scheme.name,
    }


def _normalisation(contract: DataContract) -> dict[str, Any]:
    stats = contract.stats
    origin = "the paper's DFC2020 statistics" if stats == PAPER_STATS else "computed on data"
    bands = {s: list(contract.bands(s)) for s in ("s1", "s2")}
    moments = {s: stats.get(s, PAPER_STATS[s]) for s in bands}  # as Normaliser.from_stats
    per_band = {
        s: {b: [moments[s]["mean"].get(b), moments[s]["std"].get(b)] for b in bands[s]}
        for s in bands
    }
    return {"rule": "clip, then (x - mean) / std per band", "clip": stats.get("clip",
            PAPER_STATS["clip"]), "statistics": origin, "mean_std": per_band}  # fmt: skip


def _inputs(contract: DataContract) -> dict[str, Any]:
    sensors = list(contract.sensors)
    return {
        "sensors": [s.upper() for s in sensors],
        "bands": {s.upper(): list(contract.bands(s)) for s in sensors},
        "units": {s.upper(): INPUT_UNITS[s] for s in sensors},
    }


def checkpoint_card(
    source: DataSource, contract: DataContract, config: dict, steps: int, losses: tuple
) -> dict[str, Any]:
    """Facts of a pretraining checkpoint; ``losses`` is (first, last) logged loss."""
    from sarfuse.ssl.methods import METHODS

    method = contract.method
    loss = (METHODS[method].__doc__ or method).splitlines()[0]
    return {
        "model": "sarfuse self-supervised fusion network (pretraining checkpoint)",
        "files": ["last.ckpt"],
        "data": {**_data(source), "labels_used": False},
        **_inputs(contract),
        "normalisation": _normalisation(contract),
        "training": {
            "method": method,
            "fusion": contract.fusion,
            "loss": loss,
            "steps": steps,
            "first_loss": losses[0],
            "last_loss": losses[1],
            "width": config.get("width"),
            "feat_dim": config.get("feat_dim"),
            "lr": config.get("lr"),
            "batch": config.get("batch"),
            "crop": config.get("crop"),
            "seed": config.get("seed"),
        },  # fmt: skip
        "scores": "none: a pretrained network is scored through the probes trained on it",
        "limits": LIMITS,
    }


def probe_card(
    source: DataSource, contract: DataContract, meta: dict, result: dict, classifier: dict
) -> dict[str, Any]:
    """Facts of a probe: its features, classifier, training labels and evaluation scores;
    ``classifier`` holds what the classifier minimised (``loss``) and its options."""
    scores = {k: result[k] for k in ("OA", "AA", "kappa", "mIoU") if k in result}
    return {
        "model": f"sarfuse {result['classifier']} probe on {result['features']} features",
        "files": ["probe.pt"],
        "checkpoint": meta.get("checkpoint"),
        "data": _data(source),
        **_inputs(contract),
        "normalisation": _normalisation(contract),
        "classes": [c["name"] for c in meta["scheme"]["classes"]],
        "training": {
            "features": result["features"],
            "classifier": result["classifier"],
            "indices": meta["indices"],
            "labelled_patches": result.get("labelled_patches"),
            "patch_size": result.get("patch_size"),
            "seed": meta.get("seed"),
            **classifier,
            "decision": result.get("decision"),  # arg-max, or the IoU offsets and why
        },
        "scores": {
            **scores,
            "evaluated_on": f"{result.get('eval_patches')} held-out patches of the same data",
        },
        "limits": [
            *LIMITS,
            "Scores come from held-out patches of the training data's scenes, "
            "which share their context: expect lower scores elsewhere.",
        ],  # fmt: skip
    }


def _markdown(card: dict[str, Any]) -> str:
    lines = [f"# Model card: {card['model']}", ""]
    for key, value in card.items():
        if key == "model":
            continue
        lines.append(f"## {key.replace('_', ' ').capitalize()}")
        if isinstance(value, dict):
            lines += [f"- **{k}**: {_text(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            lines += [f"- {_text(v)}" for v in value]
        else:
            lines.append(_text(value))
        lines.append("")
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value)


def write_model_card(directory: str | Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``MODEL_CARD.md`` and ``model_card.json`` into ``directory`` (atomically)."""
    directory = Path(directory)
    card = {
        **card,
        "licence": LICENCE,
        "citation": CITATION,
        "sarfuse_version": __version__,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    js = atomic_write_text(directory / CARD_JSON, json.dumps(card, indent=2) + "\n")
    return atomic_write_text(directory / CARD_MD, _markdown(card)), js
