"""Two views of a context crop, and the warp that brings the second view's features back.

The loader delivers *context* crops of side ``c + 2m``. View 1 is the centre ``c x c`` crop;
view 2 is the crop shifted by (dy, dx) (|dy|, |dx| <= m, so it is always cut from real data) and
then flipped. :func:`align_to_view1` undoes the flip and the shift on features of view 2 so
that both views' features describe the same ground pixel at the same index. All warps are
integer index arithmetic followed by one ``gather``: exact, vectorised, and differentiable.

The authors shift (by up to 20 %) and flip a 32 x 32 crop and contrast the centre 16 x 16 of
each view, which the shift never pushes off the crop; our views are whole crops, cut from a
context wide enough that every shifted pixel is real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sarfuse.errors import SarfuseError, check


@dataclass
class ViewParams:
    """Per-sample parameters of the second view; every tensor is (B,).

    ``flip_h`` mirrors left-right (columns), ``flip_v`` up-down (rows). ``margin`` is the largest
    shift these were drawn with, so the crop size is ``context - 2 * margin``.
    """

    dy: Tensor  # int64 row shift of view 2 in pixels, in [-margin, margin]
    dx: Tensor  # int64 column shift of view 2 in pixels, in [-margin, margin]
    flip_h: Tensor  # bool
    flip_v: Tensor  # bool
    margin: int

    def to(self, device: torch.device | str) -> ViewParams:
        move = [t.to(device) for t in (self.dy, self.dx, self.flip_h, self.flip_v)]
        return ViewParams(*move, margin=self.margin)


def sample_view_params(
    batch_size: int,
    max_shift: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ViewParams:
    """Uniform integer shifts in [-max_shift, max_shift] and fair-coin flips, per sample."""
    check(max_shift >= 0, None, f"the view shift must be non-negative, got {max_shift}")
    shift = torch.randint(-max_shift, max_shift + 1, (2, batch_size), generator=generator)
    flips = torch.rand(2, batch_size, generator=generator) < 0.5
    params = ViewParams(shift[0], shift[1], flips[0], flips[1], margin=int(max_shift))
    return params.to(device) if device is not None else params


def _gather_pixels(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """out[b, ..., i, j] = x[b, ..., rows[b, i], cols[b, j]] for x (B, ..., H, W), rows (B, h),
    cols (B, w); indices must be in range."""
    b, w = x.shape[0], x.shape[-1]
    flat = x.reshape(b, -1, x.shape[-2] * w)  # (B, K, H*W)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, -1)  # (B, 1, h*w)
    out = flat.gather(2, index.expand(-1, flat.shape[1], -1))  # (B, K, h*w)
    return out.reshape(*x.shape[:-2], rows.shape[1], cols.shape[1])


def _view_axis(offset: Tensor, flip: Tensor, size: int) -> Tensor:
    """Source positions (B, size) of a crop starting at ``offset``; reversed where ``flip``."""
    ar = torch.arange(size, device=offset.device)
    return offset[:, None] + torch.where(flip[:, None], size - 1 - ar, ar)


def make_views(batch: dict, params: ViewParams, crop: int | None = None) -> tuple[dict, dict]:
    """Cut view 1 (centre crop) and view 2 (shifted, flipped) from a batch of context crops.

    Every tensor of ``batch`` whose last two dims are the context size (``s1`` (B, C1, h, w),
    ``s2``, ``valid`` (B, h, w), ``segments`` (B, h, w) or (B, S, h, w), ...) is cropped to
    (..., crop, crop); other entries are passed through. ``crop`` defaults to
    ``context - 2 * params.margin``.
    """
    if "valid" not in batch:
        raise SarfuseError(None, "a training batch needs a 'valid' mask")
    h, w = batch["valid"].shape[-2:]
    crop = min(h, w) - 2 * params.margin if crop is None else crop
    check(0 < crop <= min(h, w), None, f"crop {crop} does not fit the {h}x{w} context")
    params = params.to(batch["valid"].device)
    top, left = (h - crop) // 2, (w - crop) // 2
    largest = int(torch.cat([params.dy.abs(), params.dx.abs()]).max())
    check(
        largest <= min(top, left),
        None,
        f"view shift of {largest} pixels leaves the {h}x{w} context of a {crop}-pixel crop",
    )
    no_flip = torch.zeros_like(params.flip_h)
    rows1 = _view_axis(torch.full_like(params.dy, top), no_flip, crop)
    cols1 = _view_axis(torch.full_like(params.dx, left), no_flip, crop)
    rows2 = _view_axis(top + params.dy, params.flip_v, crop)
    cols2 = _view_axis(left + params.dx, params.flip_h, crop)

    def cut(rows: Tensor, cols: Tensor) -> dict:
        return {
            k: _gather_pixels(v, rows, cols) if _is_spatial(v, h, w) else v
            for k, v in batch.items()
        }

    return cut(rows1, cols1), cut(rows2, cols2)


def _is_spatial(value: object, h: int, w: int) -> bool:
    return isinstance(value, Tensor) and value.ndim >= 3 and tuple(value.shape[-2:]) == (h, w)


def align_to_view1(feat2: Tensor, params: ViewParams) -> tuple[Tensor, Tensor]:
    """Warp view-2 maps (B, ..., h, w) onto view 1's pixel grid.

    Returns ``aligned`` (same shape) with ``aligned[..., i, j]`` the value of view 2 at the ground
    pixel seen at view 1's (i, j), and ``overlap`` (B, h, w) bool, False where that ground pixel
    lies outside view 2 (``aligned`` is zero/False there).
    """
    h, w = feat2.shape[-2:]
    params = params.to(feat2.device)
    # view 1's row i is crop-2 row i - dy; view 2 stores crop-2 row r at r, or h-1-r when flipped
    rows = torch.arange(h, device=feat2.device)[None, :] - params.dy[:, None]  # (B, h)
    cols = torch.arange(w, device=feat2.device)[None, :] - params.dx[:, None]  # (B, w)
    overlap = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    rows = torch.where(params.flip_v[:, None], h - 1 - rows, rows).clamp(0, h - 1)
    cols = torch.where(params.flip_h[:, None], w - 1 - cols, cols).clamp(0, w - 1)
    aligned = _gather_pixels(feat2, rows, cols)
    keep = overlap.reshape(overlap.shape[0], *([1] * (feat2.ndim - 3)), h, w)
    return torch.where(keep, aligned, torch.zeros_like(aligned)), overlap
