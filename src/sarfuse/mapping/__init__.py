"""Few-label mapping: splits, per-pixel classifiers, metrics, and tiled maps of whole scenes."""

from sarfuse.mapping.inference import map_scene
from sarfuse.mapping.metrics import confusion_matrix, format_table, scores
from sarfuse.mapping.probe import (
    CLASSIFIERS,
    Classifier,
    ClassifierName,
    LinearProbe,
    RandomForestProbe,
    load_classifier,
    predict_proba,
    save_classifier,
    train_classifier,
    train_linear_probe,
    train_random_forest,
)
from sarfuse.mapping.spatial import BlockSpec, block_split, draw_split
from sarfuse.mapping.splits import Split, few_label_split, load_split, save_split
from sarfuse.mapping.tiling import blend_weights, tile_windows

__all__ = [
    "BlockSpec",
    "CLASSIFIERS",
    "Classifier",
    "ClassifierName",
    "LinearProbe",
    "RandomForestProbe",
    "Split",
    "blend_weights",
    "block_split",
    "confusion_matrix",
    "draw_split",
    "few_label_split",
    "format_table",
    "load_classifier",
    "load_split",
    "map_scene",
    "predict_proba",
    "save_classifier",
    "save_split",
    "scores",
    "tile_windows",
    "train_classifier",
    "train_linear_probe",
    "train_random_forest",
]
