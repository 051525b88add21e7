"""Loading pretrained networks and extracting frozen per-pixel features from them.

A checkpoint carries, besides the weights, the *data contract* it was trained under (sensors,
bands, normalisation statistics, superpixel parameters), so mapping can never feed it other inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np  # noqa: F401  (accepted input type)
import torch

from sarfuse.contract import DataContract
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import load_tensors
from sarfuse.models import ModelConfig, ProbeKind, build_model
from sarfuse.ssl.methods import METHODS, probe_kind


@dataclass
class Pretrained:
    """A frozen fusion network and the data contract it expects.

    Calling it gives the per-pixel features a probe reads, which depend on the pretraining
    method (``contract.method``): the decoder's output, or for image-level methods, which
    train only the encoders, the encoder hypercolumns (see :meth:`FusionNet.probe`).
    """

    model: torch.nn.Module
    contract: DataContract
    path: str

    @property
    def probe(self) -> ProbeKind:
        method = self.contract.method  # "supervised" networks are not pretrained: features
        return probe_kind(method) if method in METHODS else "features"

    @property
    def feature_dim(self) -> int:
        return int(self.model.probe_dim(self.probe))

    @property
    def sensors(self) -> tuple[str, ...]:
        return self.contract.sensors

    def to(self, device: str | torch.device) -> Pretrained:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, s1: torch.Tensor | None, s2: torch.Tensor | None) -> torch.Tensor:
        """Features (B, feature_dim, H, W) of *normalised* s1 (B, C1, H, W), s2 (B, C2, H, W)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        s1 = s1.to(device) if s1 is not None and "s1" in self.sensors else None
        s2 = s2.to(device) if s2 is not None and "s2" in self.sensors else None
        for name in self.sensors:
            if (s1 if name == "s1" else s2) is None:
                raise SarfuseError(self.path, f"this checkpoint needs {name.upper()} input")
        return self.model.probe(s1, s2, self.probe)

    def randomised(self, seed: int = 0) -> Pretrained:
        """The same architecture with fresh random weights (the `random` baseline)."""
        torch.manual_seed(seed)
        return Pretrained(build_model(self.model.cfg), self.contract, f"{self.path} (random)")


def _read(path: Path) -> dict:
    if not path.is_file():
        raise SarfuseError(path, "checkpoint not found")
    ckpt = load_tensors(path, "not a readable checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("sarfuse"), dict):
        raise SarfuseError(path, "not a sarfuse pretraining checkpoint")
    missing = [k for k in ("model", "sensors") if k not in ckpt["sarfuse"]]
    missing += [] if isinstance(ckpt.get("state_dict"), dict) else ["state_dict"]
    if missing:
        raise SarfuseError(path, f"incomplete sarfuse checkpoint: no {', '.join(missing)}")
    return ckpt


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> Pretrained:
    ckpt = _read(Path(path))
    meta = ckpt["sarfuse"]
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        model = build_model(ModelConfig(**meta["model"]))
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SarfuseError(path, f"weights do not fit the network it describes ({first})") from None
    model.eval()
    try:
        contract = DataContract.from_dict(meta)
    except (KeyError, TypeError, ValueError) as err:
        raise SarfuseError(path, f"incomplete data contract in the checkpoint ({err})") from None
    return Pretrained(model, contract, path)


def load_pretrained(path: str | Path) -> Pretrained:
    """Load a checkpoint written by ``sarfuse pretrain`` (cached while the file is unchanged)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.ckpt"
    if not path.is_file():
        raise SarfuseError(path, "checkpoint not found")
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)


def features(
    checkpoint: str | Path | Pretrained,
    s1: torch.Tensor | np.ndarray | None,
    s2: torch.Tensor | np.ndarray | None,
    normalised: bool = False,
) -> torch.Tensor:
    """Frozen per-pixel features (B, feature_dim, H, W) of a pretrained network.

    ``s1`` is (B, 2, H, W) in dB and ``s2`` (B, C, H, W) reflectance x 10000 in the checkpoint's
    bands, unless ``normalised`` says they were already normalised with the checkpoint's statistics.
    A single image (C, H, W) is accepted too.
    """
    net = checkpoint if isinstance(checkpoint, Pretrained) else load_pretrained(checkpoint)

    norm = net.contract.normaliser()

    def prep(x, sensor: str) -> torch.Tensor | None:
        if x is None or sensor not in net.sensors:
            return None
        x = torch.as_tensor(x, dtype=torch.float32)
        x = x[None] if x.ndim == 3 else x  # (C, H, W) -> (1, C, H, W)
        if normalised:
            return x
        bands = net.contract.bands(sensor)
        return norm.apply_s1(x, bands) if sensor == "s1" else norm.apply_s2(x, bands)

    return net(prep(s1, "s1"), prep(s2, "s2"))
