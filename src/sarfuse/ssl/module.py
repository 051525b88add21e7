"""The Lightning module of pretraining: builds the network and the method, steps the optimiser.

Everything specific to a method lives in :mod:`sarfuse.ssl.methods`; this file only wires the
views, the schedule, logging and the extra state a checkpoint must carry (RNG, data contract).
"""

from __future__ import annotations

import math
import random
import time

import lightning as L
import numpy as np
import torch

from sarfuse.models import build_model
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.crops import crop_batch
from sarfuse.ssl.methods import build_method
from sarfuse.ssl.views import sample_view_params


def view_margin(crop: int, max_shift: float) -> int:
    """Pixels of context needed on each side of a crop for shifts up to ``max_shift * crop``."""
    return math.ceil(max_shift * crop)


def context_size(config: PretrainConfig) -> int:
    """Side of the context crops the loader must deliver, for the largest crop in use."""
    return max(c + 2 * view_margin(c, config.max_shift) for c in (config.crop, *config.crops))


def rng_state() -> dict:
    """Every global generator's state, in types ``torch.load(weights_only=True)`` accepts (Lightning
    loads a checkpoint to resume that way): numpy's key array travels as a tensor."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class PretrainModule(L.LightningModule):
    """Self-supervised pretraining of a fusion network with one registered method."""

    def __init__(self, config: dict, s1_channels: int, s2_channels: int, contract: dict) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = PretrainConfig.from_dict(config)
        self.model = build_model(self.cfg.model_config(s1_channels, s2_channels))
        # channels-last weights make every convolution run channels-last (oneDNN's and cuDNN's
        # fast layout) and the features it pools a free view (benchmarks/README.md)
        self.model.to(memory_format=torch.channels_last)
        self.method = build_method(self.cfg, model=self.model)
        self.contract = contract
        self._tic = time.perf_counter()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        sizes = (self.cfg.crop, *self.cfg.crops)
        crop = sizes[int(torch.randint(len(sizes), ()))] if len(sizes) > 1 else sizes[0]
        margin = view_margin(crop, self.cfg.max_shift)
        batch = crop_batch(batch, crop + 2 * margin)
        params = sample_view_params(batch["valid"].shape[0], margin, device=self.device)
        losses = self.method.loss(self.model, batch, params)
        bsz = batch["valid"].shape[0]
        now = time.perf_counter()
        pixels_per_s = 2 * bsz * crop * crop / max(now - self._tic, 1e-9)
        self._tic = now
        for name, value in losses.items():
            self.log(name, value.detach(), prog_bar=name == "loss", batch_size=bsz)
        self.log("px_per_s", pixels_per_s, prog_bar=True, batch_size=bsz)
        return losses["loss"]

    def optimizer_step(self, *args, **kwargs) -> None:
        """Step, then update the method's state (EMA teacher) before any callback checkpoints."""
        super().optimizer_step(*args, **kwargs)
        self.method.after_step(self.model)

    def configure_optimizers(self):
        """Adam, a linear warm-up, then a constant rate (the authors' schedule differs: see
        :attr:`PretrainConfig.lr`)."""
        cfg = self.cfg
        opt = torch.optim.Adam(self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(cfg.warmup_steps, 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["sarfuse"] = {**self.contract, "model": self.model.config}
        checkpoint["rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])
