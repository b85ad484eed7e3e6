"""The depth-completion model on the core encoder: image-patch tokens and point tokens fused by attention.

- Patch tokens: each `patch` x `patch` block of the pixel maps (image, push-pull r, nearest-point r and
  distance, sparse r and mask; see features.py) flattened and embedded linearly (ViT).
- Point tokens: the points falling in one patch cell are embedded one by one (an MLP over their in-cell
  offset, r, r relative to the cell, local shape, relative spacing) and max-pooled (PointNet / PointPillars):
  one token per cell that has points, so a frame has as many point tokens as occupied cells: the sequences
  vary in length and are packed (core.packing layout: no padding, no compute on it).
- Both kinds carry their 2-D position (patch row, column; for a point token the mean position of its
  points, fractional) through the core's axial rotary embedding, so attention sees where tokens are
  relative to each other (RoPE-2D as in CroCo/DUSt3R); a learned type embedding tells them apart.
- A per-token head on the patch tokens, upsampled to pixels: the patch tokens' features are interpolated
  bilinearly to every pixel and, with that pixel's input maps, mixed per pixel (1 x 1) and over its 3 x 3
  neighbourhood (the local context of scan lines and edges that an 8 x 8 token blurs); the core's
  DenseHead then gives per pixel (correction to the push-pull r, log of the expected absolute error b):
  dense depth and its uncertainty at full resolution, sharp where the image is.

Output per patch token: [patch^2, 2] = (r, log b) of its pixels, r = push-pull r + correction.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from core.encoder import DenseHead, Encoder, EncoderConfig
from core.packing import lengths_to_cu_seqlens
from domains.pointclouds.features import GRAY, N_PIXEL_CHANNELS, N_POINT_FEATURES, Sample, nearest_maps

IMAGE_MEAN, IMAGE_STD = 0.5, 0.25


class DepthCompletionNet(nn.Module):
    def __init__(self, meta: Mapping[str, Any]):
        super().__init__()
        cfg = EncoderConfig.from_dict(dict(meta["encoder"]))
        self.patch, d = int(meta["patch"]), cfg.d_model
        pp = self.patch * self.patch
        self.patch_embed = nn.Linear(pp * N_PIXEL_CHANNELS, d)
        hidden = int(meta["point_hidden"])
        self.point_mlp = nn.Sequential(nn.Linear(N_POINT_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.point_type = nn.Parameter(torch.zeros(d))
        self.encoder = Encoder(cfg)
        width = int(meta["decoder_hidden"])
        # per pixel (1 x 1 over [upsampled token features, pixel maps]), then the 3 x 3 neighbourhood. The 1 x 1
        # part is split in two: bilinear upsampling is a convex combination, so projecting the tokens to
        # `width` first and upsampling after is the same map, with `width` channels upsampled instead of d
        self.token_proj = nn.Linear(d, width, bias=False)
        self.pixel_proj = nn.Conv2d(N_PIXEL_CHANNELS, width, 1)
        self.refine = nn.Sequential(nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU())
        # the core's per-token dense head, applied per pixel: (correction to r, log b)
        self.head = DenseHead(width, 1, uncertainty=True)
        last = self.head.net
        nn.init.zeros_(last.weight)   # starts as the base map with a constant uncertainty
        with torch.no_grad():
            last.bias.copy_(torch.tensor([0.0, float(np.log(0.1))]))

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        patches = self.patch_embed(batch["patch_features"])
        points = self.point_mlp(batch["point_features"])
        n_cells = batch["cell_positions"].shape[0]
        index = batch["point_cell"][:, None].expand(-1, points.shape[1])
        cells = points.new_zeros((n_cells, points.shape[1])).scatter_reduce(0, index, points, "amax",
                                                                             include_self=False)
        total = patches.shape[0] + n_cells
        tokens = patches.new_zeros((total, patches.shape[1]))
        tokens = tokens.index_copy(0, batch["patch_slot"], patches)
        tokens = tokens.index_copy(0, batch["cell_slot"], cells + self.point_type)
        positions = patches.new_zeros((total, 2))
        positions = positions.index_copy(0, batch["patch_slot"], batch["patch_positions"])
        positions = positions.index_copy(0, batch["cell_slot"], batch["cell_positions"])
        x = self.encoder(tokens, batch["cu_seqlens"], batch["max_seqlen"], positions=positions)
        feats = x.index_select(0, batch["patch_slot"])                                    # [Tp, D]
        pixels = batch["patch_features"].view(feats.shape[0], -1, N_PIXEL_CHANNELS)      # [Tp, pp, 8]
        decoded = self._decode(self.token_proj(feats), pixels, batch["grids"])           # [Tp, pp, width]
        correction, log_b = self.head(decoded)
        return torch.stack([batch["base"] + correction[..., 0], log_b[..., 0]], -1)

    def _decode(self, feats: torch.Tensor, pixels: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
        """Per frame: (projected) token features upsampled bilinearly to the pixels plus the projected pixel
        channels, then a 3 x 3 convolution (local context: scan lines, edges); back in the patch layout
        [Tp, p^2, width].
        Frames of one size go through the convolutions together (grids: [B, 3] = first patch, rows, cols)."""
        p, out = self.patch, [None] * len(grids)
        by_size: dict[tuple[int, int], list[int]] = {}
        for k, (_, hp, wp) in enumerate(grids.tolist()):
            by_size.setdefault((hp, wp), []).append(k)
        for (hp, wp), members in by_size.items():
            tokens, maps = [], []
            for k in members:
                start = int(grids[k, 0])
                tokens.append(feats[start:start + hp * wp].reshape(hp, wp, -1).permute(2, 0, 1))
                pix = pixels[start:start + hp * wp].reshape(hp, wp, p, p, -1).permute(4, 0, 2, 1, 3)
                maps.append(pix.reshape(-1, hp * p, wp * p))
            up = nn.functional.interpolate(torch.stack(tokens), size=(hp * p, wp * p), mode="bilinear",
                                           align_corners=False)
            decoded = self.refine(up + self.pixel_proj(torch.stack(maps)))              # [n, width, H, W]
            for k, img in zip(members, decoded):
                out[k] = img.reshape(-1, hp, p, wp, p).permute(1, 3, 2, 4, 0).reshape(hp * wp, p * p, -1)
        return torch.cat(out)


def _pad(a: np.ndarray, hp: int, wp: int, mode: str = "edge", value: float = 0.0) -> np.ndarray:
    pad = [(0, hp - a.shape[0]), (0, wp - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode=mode) if mode == "edge" else np.pad(a, pad, constant_values=value)


def _patches(a: np.ndarray, p: int) -> np.ndarray:
    """[H, W, C] -> [H/p * W/p, p * p * C] in row-major patch order (pixel order inside: row, column, channel)."""
    h, w, c = a.shape
    return a.reshape(h // p, p, w // p, p, c).transpose(0, 2, 1, 3, 4).reshape((h // p) * (w // p), p * p * c)


def unpatch(values: np.ndarray, height: int, width: int, p: int) -> np.ndarray:
    """[H/p * W/p, p * p, ...] -> [H, W, ...] (inverse of the patch order) cropped to height x width."""
    hp, wp = -(-height // p), -(-width // p)
    rest = values.shape[2:]
    out = values.reshape(hp, wp, p, p, *rest).swapaxes(1, 2).reshape(hp * p, wp * p, *rest)
    return out[:height, :width]


class Collate:
    """Samples -> one packed batch. Training collates flip frames left-right at random, jitter the image's
    exposure, gamma and white balance (real cameras are not the renderer), and blank the image of some
    (`no_image` of them: users without a camera image get the same gray), with torch's global RNG seeded by
    the trainer; validation and prediction collates do none of this."""

    def __init__(self, samples: Sequence[Sample], patch: int, augment: bool = False, no_image: float = 0.1):
        self.samples, self.p, self.augment, self.no_image = samples, patch, augment, no_image

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        p = self.p
        flips = torch.rand(len(idx)) < 0.5 if self.augment else torch.zeros(len(idx), dtype=torch.bool)
        blank = (torch.rand(len(idx)) < self.no_image) if self.augment else torch.zeros(len(idx), dtype=torch.bool)
        # per frame: exposure gain, gamma, three channel gains (identity without augmentation)
        photo = (torch.rand(len(idx), 5) * 2 - 1) if self.augment else torch.zeros(len(idx), 5)
        parts = {k: [] for k in ("patch_features", "patch_positions", "base", "truth", "point_features",
                                 "point_cell", "cell_positions", "patch_slot", "cell_slot")}
        lengths, offset, cell_offset, patch_start, grids = [], 0, 0, 0, []
        for i, flip, gray, jitter in zip(idx, flips.tolist(), blank.tolist(), photo.numpy()):
            s = self.samples[i]
            h, w = s.shape
            hp, wp = -(-h // p) * p, -(-w // p) * p
            image, smooth, truth = (np.full_like(s.image, GRAY) if gray else s.image), s.smooth, s.truth
            cols, shape6 = s.cols, s.shape6
            if flip:   # x -> -x: the xy and xz covariances change sign
                image, smooth = image[:, ::-1], smooth[:, ::-1]
                truth = None if truth is None else truth[:, ::-1]
                cols, shape6 = w - 1 - cols, shape6 * np.array([1, 1, 1, -1, -1, 1], np.float32)
            colour = image.astype(np.float32) / 255
            if jitter.any() and not gray:
                gain = np.exp(0.3 * jitter[0]) * np.exp(0.1 * jitter[2:])
                colour = np.clip(colour ** np.exp(0.2 * jitter[1]) * gain, 0, 1)
            near, dist = nearest_maps(s.rows, cols, s.r, (h, w))
            sparse, mask = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
            sparse[s.rows, cols], mask[s.rows, cols] = s.r, 1.0
            maps = np.stack([*((colour - IMAGE_MEAN) / IMAGE_STD).transpose(2, 0, 1), smooth,
                             near, np.log1p(dist) - 1.0, sparse, mask], -1)
            maps = _pad(maps, hp, wp)
            n_patch = (hp // p) * (wp // p)
            parts["patch_features"].append(_patches(maps, p))
            parts["base"].append(_patches(_pad(smooth, hp, wp)[..., None], p))   # the model corrects push-pull
            if truth is not None:
                parts["truth"].append(_patches(_pad(truth, hp, wp, "constant", np.nan)[..., None], p))
            pr, pc = np.divmod(np.arange(n_patch), wp // p)
            parts["patch_positions"].append(np.stack([pr, pc], 1).astype(np.float32))
            grids.append((patch_start, hp // p, wp // p))
            patch_start += n_patch
            # point tokens: one per occupied cell, after the frame's patch tokens
            cell = (s.rows // p) * (wp // p) + cols // p
            occupied, point_cell = np.unique(cell, return_inverse=True)
            counts = np.bincount(point_cell, minlength=len(occupied)).astype(np.float32)
            mean_r = np.bincount(point_cell, s.r, len(occupied)) / counts
            cell_pos = np.stack([np.bincount(point_cell, (s.rows + 0.5) / p, len(occupied)),
                                 np.bincount(point_cell, (cols + 0.5) / p, len(occupied))], 1) / counts[:, None] - 0.5
            parts["point_features"].append(np.concatenate([
                np.stack([((cols % p) + 0.5) / p * 2 - 1, ((s.rows % p) + 0.5) / p * 2 - 1, s.r,
                          s.r - mean_r[point_cell]], 1), shape6 * 3 - 1, s.spacing[:, None] / 2 - 1.0], 1))
            parts["point_cell"].append(point_cell + cell_offset)
            parts["cell_positions"].append(cell_pos.astype(np.float32))
            parts["patch_slot"].append(offset + np.arange(n_patch))
            parts["cell_slot"].append(offset + n_patch + np.arange(len(occupied)))
            lengths.append(n_patch + len(occupied))
            offset += lengths[-1]
            cell_offset += len(occupied)
        batch = {k: torch.from_numpy(np.concatenate(v).astype(np.float32 if k not in ("point_cell", "patch_slot",
                                                                                       "cell_slot") else np.int64))
                 for k, v in parts.items() if v}
        batch["grids"] = torch.tensor(grids, dtype=torch.int64)
        batch["cu_seqlens"] = lengths_to_cu_seqlens(torch.tensor(lengths))
        batch["max_seqlen"] = max(lengths)
        batch["size"] = len(idx)
        return batch


def loss(out: torch.Tensor, batch: Mapping[str, Any]):
    """L1 on r (~ AbsRel for small errors) + the Laplace negative log-likelihood of the (detached) error
    under the predicted scale b: the depth is trained for the metric, b to rank and size the errors."""
    truth = batch["truth"]
    valid = torch.isfinite(truth)
    r, log_b = out[..., 0].float()[valid], out[..., 1].float()[valid]
    err = (r - truth[valid]).abs()
    nll = err.detach() * torch.exp(-log_b) + log_b
    l1 = err.mean()
    return l1 + 0.1 * nll.mean(), {"l1": l1, "nll": nll.mean()}


def build(meta: Mapping[str, Any]) -> DepthCompletionNet:
    return DepthCompletionNet(meta)
