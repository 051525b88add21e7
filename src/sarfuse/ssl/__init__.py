"""sarfuse.ssl: views, superpixel pooling, losses and methods of self-supervised pretraining."""

from sarfuse.ssl.heads import ProjectionHead
from sarfuse.ssl.losses import ContrastOptions, dcca_loss, hard_negative_nt_xent
from sarfuse.ssl.methods import (
    METHODS,
    EMATeacher,
    Method,
    MethodName,
    build_method,
    check_combination,
    probe_kind,
    valid_combinations,
)
from sarfuse.ssl.pooling import paired_superpixel_mean, superpixel_mean
from sarfuse.ssl.views import ViewParams, align_to_view1, make_views, sample_view_params

__all__ = [
    "METHODS",
    "ContrastOptions",
    "EMATeacher",
    "Method",
    "MethodName",
    "ProjectionHead",
    "ViewParams",
    "align_to_view1",
    "build_method",
    "check_combination",
    "dcca_loss",
    "hard_negative_nt_xent",
    "make_views",
    "paired_superpixel_mean",
    "probe_kind",
    "sample_view_params",
    "superpixel_mean",
    "valid_combinations",
]
