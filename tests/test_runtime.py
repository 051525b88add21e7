"""Where and how a command runs: the network's arithmetic and the allocator setting."""

from __future__ import annotations

import ctypes
import resource
from pathlib import Path

import pytest
import torch

from sarfuse.runtime import (
    autocast,
    keep_freed_memory,
    native_bf16,
    release_freed_memory,
    resolve_precision,
)


def test_auto_precision_follows_the_hardware():
    expected = "bf16" if native_bf16("cpu") else "32"
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("32", "cpu") == "32"
    assert resolve_precision("bf16", "cpu") == "bf16"


def test_autocast_runs_convolutions_in_bfloat16_only_when_asked():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with autocast("cpu", "bf16"):
        assert conv(x).dtype == torch.bfloat16
    with autocast("cpu", "32"):
        assert conv(x).dtype == torch.float32


def test_freed_memory_is_kept_where_the_c_library_is_glibc():
    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("not glibc: nothing to set")
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # once per process, then remembered
    n = 64 * 2**20 // 4  # a 64 MiB block: above glibc's default mmap threshold
    torch.ones(n).sum()  # allocated, touched, freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    again = torch.ones(n)  # served from the kept block: no fresh page to fault in
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < n * 4 // resource.getpagesize() // 4, faults  # unmapped: one per page
    del again


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_kept_memory_goes_back_to_the_system_after_a_map():
    if not keep_freed_memory():
        pytest.skip("not glibc: nothing is kept")
    big = torch.ones(256 * 2**20 // 4)  # 256 MiB, touched
    del big  # kept by malloc for the next tile
    kept = _rss_mib()
    release_freed_memory()
    assert _rss_mib() < kept - 128
