"""sarfuse.models: the ResUnet and the SAR-optical fusion networks built from it."""

from sarfuse.models.fusion import (
    FUSIONS,
    PROBES,
    FusionName,
    FusionNet,
    ModelConfig,
    ProbeKind,
    build_model,
)
from sarfuse.models.hypercolumn import hypercolumn
from sarfuse.models.resunet import Decoder, Encoder, ImageHead, ResUnet

__all__ = [
    "FUSIONS",
    "PROBES",
    "Decoder",
    "Encoder",
    "FusionName",
    "FusionNet",
    "ImageHead",
    "ModelConfig",
    "ProbeKind",
    "ResUnet",
    "build_model",
    "hypercolumn",
]
