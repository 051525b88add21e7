"""Where and how a command runs: the device, Lightning's accelerator name, quiet logging, and the
data a command works on. Kept free of Lightning and of the network code so that ``stats``,
``probe`` and ``map`` resolve ``--device auto`` or their data without importing them."""

from __future__ import annotations

import ctypes
import logging
import warnings
from contextlib import nullcontext
from functools import cache
from pathlib import Path
from typing import Literal

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


InferencePrecision = Literal["auto", "32", "bf16"]


def native_bf16(device: str) -> bool:
    """True where bfloat16 matrix maths runs natively, so autocasting to it pays: a CUDA GPU
    with bf16, or a CPU with AMX or AVX-512 BF16 (elsewhere it is emulated and slower)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: InferencePrecision, device: str) -> Literal["32", "bf16"]:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``32``; others as given."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "32"
    return precision


def autocast(device: str, precision: str):
    """A context running a network's convolutions in bfloat16 (``bf16``), or a no-op (``32``)."""
    if precision != "bf16":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (AttributeError where they are missing)
    except (OSError, AttributeError):
        return None
    return libc


@cache
def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed big blocks for reuse instead of unmapping them.

    By default a block over 32 MiB is mmapped on every allocation and unmapped when freed, so
    each of a network's full-tile activations (~130 MB at tile 512, 4 tiles a pass) is zeroed
    afresh by the kernel page by page: measured on 2 cores, a third of a map's CPU time went to
    page faults. Raising the mmap and trim thresholds makes such blocks come from the heap and
    stay there for the next tile, at the cost of holding the peak until
    :func:`release_freed_memory`. Process-wide; a no-op (False) where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 2**30) and libc.mallopt(m_trim_threshold, 2**31 - 1))


def release_freed_memory() -> None:
    """Give freed memory that malloc still holds back to the system (``malloc_trim``), at the
    end of a map, so that a long-lived process (a notebook) does not hold its peak. It does not
    change malloc's settings (a map that failed before :func:`keep_freed_memory` leaves them)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


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
