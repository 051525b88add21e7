"""sarfuse.models: the ResUnet and the SAR-optical fusion networks built from it."""

from sarfuse.models.fusion import (
    FUSIONS,
    FusionChoice,
    FusionName,
    FusionNet,
    ModelConfig,
    build_model,
    resolve_fusion,
)
from sarfuse.models.resunet import Decoder, Encoder, ImageHead, ResUnet

__all__ = [
    "FUSIONS",
    "Decoder",
    "Encoder",
    "FusionChoice",
    "FusionName",
    "FusionNet",
    "ImageHead",
    "ModelConfig",
    "ResUnet",
    "build_model",
    "resolve_fusion",
]
