"""Lightning callbacks of pretraining: atomic checkpoints and the loss curve (CSV + PNG)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L

from sarfuse.io_utils import atomic_path, atomic_write_csv


class AtomicCheckpoint(L.Callback):
    """Write ``last.ckpt`` every ``every_n_steps`` steps and at each epoch end, atomically.

    Lightning's own writer can leave a truncated file if the process dies mid-write; here the file
    under the final name is always a complete checkpoint.
    """

    def __init__(self, path: Path, every_n_steps: int = 50) -> None:
        self.path = Path(path)
        self.every = max(int(every_n_steps), 1)
        self._last_saved = -1

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self._last_saved:
            return
        self._last_saved = trainer.global_step
        if trainer.is_global_zero:
            with atomic_path(self.path) as tmp:
                # Lightning's weights_only=False: the whole training state, not the weights alone
                # (still tensors and plain data only, read back with torch.load(weights_only=True))
                trainer.save_checkpoint(tmp, weights_only=False)
        else:
            trainer.strategy.barrier()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self.save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer)


class LossLog(L.Callback):
    """One CSV row per step (step, epoch, losses, throughput) in ``path``; resumes cleanly."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        # the data's epoch (the sampler's, as many steps as the loader has batches): Lightning's
        # own count shifts when a run resumes from a checkpoint written at an epoch end
        epoch = (trainer.global_step - 1) // trainer.num_training_batches
        row = {"step": trainer.global_step, "epoch": epoch, **metrics}
        row["seconds"] = round(time.perf_counter() - self._t0, 3)
        if self.columns is None:
            self.columns = list(row)
            self._drop_rows_after(trainer.global_step - 1)
        write_header = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if write_header:
                writer.writeheader()
            writer.writerow(row)

    def _drop_rows_after(self, step: int) -> None:
        """On resume, forget rows logged after the checkpoint we restarted from."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as fh:
            # a run killed mid-append leaves a short last row: dropped with the rest
            rows = [r for r in csv.DictReader(fh) if None not in r.values() and r["step"]]
            rows = [r for r in rows if r["step"].isdigit() and int(r["step"]) <= step]
        atomic_write_csv(self.path, rows, self.columns)
