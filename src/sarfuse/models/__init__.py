"""sarfuse.models: the ResUnet and the SAR-optical fusion networks built from it."""

from sarfuse.models.fusion import (
    FUSIONS,
    PROBES,
    FusionChoice,
    FusionName,
    FusionNet,
    ModelConfig,
    ProbeKind,
    build_model,
    resolve_fusion,
)
from sarfuse.models.hypercolumn import hypercolumn
from sarfuse.models.resunet import Decoder, Encoder, ImageHead, ResUnet

__all__ = [
    "FUSIONS",
    "PROBES",
    "Decoder",
    "Encoder",
    "FusionChoice",
    "FusionName",
    "FusionNet",
    "ImageHead",
    "ModelConfig",
    "ProbeKind",
    "ResUnet",
    "build_model",
    "hypercolumn",
    "resolve_fusion",
]
