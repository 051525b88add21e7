"""Where and how a command runs: the device, Lightning's accelerator name, quiet logging, and the
data a command works on. Kept free of Lightning and of the network code so that ``stats``,
``probe`` and ``map`` resolve ``--device auto`` or their data without importing them."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from sarfuse.data.demo import demo_data
from sarfuse.data.layouts import DataSource, discover
from sarfuse.data.products import with_s2_offset
from sarfuse.errors import SarfuseError


def accelerator(device: str) -> str:
    """Lightning's accelerator for ``--device``: ``auto`` takes the GPU when there is one."""
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SarfuseError(None, "--device cuda was asked for but no CUDA device is available")
    return "gpu" if device == "cuda" else "cpu"


def torch_device(device: str) -> str:
    """``auto`` -> cuda when present, else cpu; checks that cuda exists when asked for."""
    return "cuda" if accelerator(device) == "gpu" else "cpu"


def quiet_lightning() -> None:
    """No Lightning banners or tips on the terminal, for commands and scripts that train.

    Importing Lightning sets its loggers to INFO, so this imports it first, then quietens it.
    """
    import lightning  # noqa: F401

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's own use of a torch API that torch deprecated: nothing a user can act on
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def resolve_source(
    data: str | Path | list | None,
    classes: str | Path | None = None,
    s2_offset: float | None = None,
    labels: bool = True,
) -> DataSource:
    """The data a command works on (``data`` if given, else the embedded demo data), checked
    once before any work (:func:`~sarfuse.data.validate.validate_source`).

    ``s2_offset`` is the S2 offset of files that do not state one (``--s2-offset``).
    ``labels=False`` (pretraining, statistics, superpixels) drops the labels unread, so their
    values need not fit any scheme.
    """
    from sarfuse.data.validate import validate_source, without_labels

    source = with_s2_offset(discover(data if data else demo_data(), classes=classes), s2_offset)
    if not labels:
        source = without_labels(source)
    return validate_source(source, labels=labels and source.has_labels)
