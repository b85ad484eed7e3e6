"""The lifting model: spatial-temporal tokens (one per joint per frame) on the core encoder blocks, MixSTE /
MotionBERT-style alternating attention: a spatial block attends among the 17 joints of one frame (packed per
frame), a temporal block among the frames of one joint (packed per joint, rotary on the frame index, so a
pruned sequence keeps its true time offsets). Options (config `model.*`):

- HoT token pruning (Li et al., CVPR 2024, "Hourglass Tokenizer"): after temporal block `hot_prune_after`, a
  Token Pruning Cluster keeps the `hot_keep` most representative frames (DPC-kNN density-peak clustering of the
  frame features; the cluster centres' tokens are kept, in time order); the remaining blocks run on them; a
  Token Recovering Attention restores every frame at the end: each frame's query cross-attends (per joint) to
  the kept tokens. Deviation: the queries are the full-length tokens from just before pruning (a skip), not
  zero-initialized learnable tokens, so recovery starts from each frame's own features. `hot_select` picks
  how the kept tokens are made: `cluster` (HoT's TPC, above), `uniform` (every window/keep-th frame) or `pool`
  (each kept token the average of its run of neighbouring frames, at their mean time: every stretch of the
  window stays represented, where density peaks favour its slow stretches).
- KTPFormer-style priors (Peng et al., CVPR 2024), as additive attention biases: spatial heads get
  -softplus(a_h) x (hops between joints on mmpose's H36M skeleton) + a learned joint-pair table; temporal heads
  get -softplus(b_h) x |frame offset| / 10 (trajectory locality). Core backends take no bias, so these blocks
  use torch SDPA with `attn_mask` here (see BiasedAttention).
- Per-joint uncertainty: a small head on the detached final features predicts log sigma (isotropic 3D Gaussian
  of the joint error); it cannot change the coordinates, and calibration on validation rescales it.

Input `inputs` [B, F, 17, C] (C = 3: x, y normalized by mmpose's VideoPoseLifting codec, detector score);
optional `frames` [B, F] frame indices. Output [B, F, 17, 4]: root-relative camera-frame xyz (metres; the
pelvis is exactly 0) and log sigma.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.module import MultiHeadAttention
from core.encoder import EncoderBlock, EncoderConfig
from core.rotary import apply_rotary, rotary_cos_sin

N_JOINTS = 17


def uniform_cu(n_seq: int, length: int, device) -> Tensor:
    return torch.arange(0, (n_seq + 1) * length, length, dtype=torch.int32, device=device)


class BiasedAttention(MultiHeadAttention):
    """Self-attention on equal-length packed sequences with an additive bias [N or 1, H, L, L] (torch SDPA's
    float attn_mask). The core backends have no bias argument; this is the one place that adds it."""

    def forward(self, x: Tensor, cu_seqlens: Tensor, max_seqlen: int, positions: Tensor | None = None,
                cos_sin: tuple[Tensor, Tensor] | None = None, bias: Tensor | None = None) -> Tensor:
        total, length = x.shape[0], max_seqlen
        q, k, v = self.qkv(x).view(total, 3, self.n_heads, self.head_dim).unbind(dim=1)
        if self.rotary and cos_sin is not None:
            q, k = apply_rotary(q, *cos_sin), apply_rotary(k, *cos_sin)
        q, k, v = (t.reshape(total // length, length, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype))
        return self.out(self.dropout(out.transpose(1, 2).reshape(total, self.d_model)))


class BiasedBlock(EncoderBlock):
    """The core's pre-norm block with BiasedAttention in place of its attention."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.attn = BiasedAttention(cfg.d_model, cfg.n_heads, cfg.attention, rotary=cfg.rotary)

    def forward(self, x, cu_seqlens, max_seqlen, cos_sin=None, bias=None):
        x = x + self.drop(self.attn(self.norm1(x), cu_seqlens, max_seqlen, cos_sin=cos_sin, bias=bias))
        return x + self.drop(self.ffn(self.norm2(x)))


def skeleton_hops(links: list[tuple[int, int]], n: int = N_JOINTS) -> np.ndarray:
    """[n, n] hop distances on the skeleton graph (Floyd-Warshall)."""
    d = np.full((n, n), np.inf)
    np.fill_diagonal(d, 0)
    for a, b in links:
        d[a, b] = d[b, a] = 1
    for m in range(n):
        d = np.minimum(d, d[:, m:m + 1] + d[m:m + 1, :])
    return d


def dpc_knn_select(features: Tensor, keep: int, k: int) -> Tensor:
    """HoT's Token Pruning Cluster: indices [B, keep] (time order) of the density-peak cluster centres among
    frame features [B, F, D] (DPC-kNN: density from the k nearest neighbours, distance to the nearest denser
    frame; score = density x distance). Ties are broken by a fixed tiny ramp, not random noise (repeatable)."""
    b, f, d = features.shape
    sq = (features * features).sum(-1)
    dist2 = (sq[:, :, None] + sq[:, None, :] - 2 * features @ features.transpose(1, 2)).clamp_min(0) / d
    dist = dist2.sqrt()
    knn = dist2.topk(min(k, f), dim=-1, largest=False).values
    density = torch.exp(-knn.mean(-1)) + torch.arange(f, device=features.device) * 1e-6 / f
    denser = density[:, None, :] > density[:, :, None]
    far = dist.flatten(1).max(-1).values[:, None, None]
    delta = torch.where(denser, dist, far).min(-1).values
    idx = (density * delta).topk(keep, dim=-1).indices
    return idx.sort(-1).values


def uniform_select(batch: int, frames: int, keep: int, device) -> Tensor:
    """Indices [B, keep]: the centre frame of each of `keep` equal stretches of the window."""
    idx = ((torch.arange(keep, device=device) + 0.5) * frames / keep).long().clamp_max(frames - 1)
    return idx[None].expand(batch, keep)


class TokenRecovery(nn.Module):
    """HoT's Token Recovering Attention: full-length queries [B, F, J, D] cross-attend per joint to the kept
    tokens [B, K, J, D]; rotary on both sides at their true frame indices."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.norm_q, self.norm_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.kv, self.out = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        nn.init.zeros_(self.out.weight)    # starts as the identity on the queries (a model fine-tuned into
        nn.init.zeros_(self.out.bias)      # HoT keeps its function until the recovery learns)

    def forward(self, query: Tensor, q_frames: Tensor, kept: Tensor, k_frames: Tensor) -> Tensor:
        b, f, j, d = query.shape
        kk = kept.shape[1]
        q = self.q(self.norm_q(query)).permute(0, 2, 1, 3).reshape(b * j * f, self.heads, self.dh)
        k, v = self.kv(self.norm_kv(kept)).permute(0, 2, 1, 3).reshape(b * j * kk, 2, self.heads, self.dh).unbind(1)
        qc = rotary_cos_sin(q_frames[:, None, :].expand(b, j, f).reshape(-1), self.dh, dtype=q.dtype)
        kc = rotary_cos_sin(k_frames[:, None, :].expand(b, j, kk).reshape(-1), self.dh, dtype=q.dtype)
        q, k = apply_rotary(q, *qc), apply_rotary(k, *kc)
        q = q.reshape(b * j, f, self.heads, self.dh).transpose(1, 2)
        k, v = (t.reshape(b * j, kk, self.heads, self.dh).transpose(1, 2) for t in (k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, j, f, d).permute(0, 2, 1, 3)
        return query + self.out(out)


class PoseLifter(nn.Module):
    def __init__(self, meta: Mapping[str, Any]):
        super().__init__()
        enc = EncoderConfig.from_dict(dict(meta["encoder"]))
        m = meta["model"]
        self.d, self.heads, self.depth = enc.d_model, enc.n_heads, enc.n_layers
        self.ktp = bool(m["ktp"])
        self.hot = bool(m["hot"])
        self.prune_after, self.keep, self.knn = int(m["hot_prune_after"]), int(m["hot_keep"]), int(m["hot_knn"])
        self.select = str(m.get("hot_select", "cluster"))     # runs made before the key existed used TPC
        block = BiasedBlock if self.ktp else EncoderBlock
        spatial_cfg = dataclasses.replace(enc, rotary=False)     # joints have no order: learned joint embeddings
        # each joint's 2D offset from the pelvis beside its absolute position: the pose's shape, explicitly
        self.rel_inputs = bool(m.get("rel_inputs", False))
        self.embed = nn.Linear(int(meta["in_channels"]) + 2 * self.rel_inputs, self.d)
        self.joint_embed = nn.Parameter(torch.randn(N_JOINTS, self.d) * 0.02)
        self.spatial = nn.ModuleList(block(spatial_cfg) for _ in range(self.depth))
        self.temporal = nn.ModuleList(block(enc) for _ in range(self.depth))
        if self.ktp:
            self.register_buffer("hops", torch.tensor(skeleton_hops(meta["skeleton_links"]), dtype=torch.float32))
            self.hop_slope = nn.Parameter(torch.zeros(self.depth, self.heads))
            self.pair_bias = nn.Parameter(torch.zeros(self.depth, self.heads, N_JOINTS, N_JOINTS))
            self.time_slope = nn.Parameter(torch.zeros(self.depth, self.heads))
        self.recover = TokenRecovery(self.d, self.heads) if self.hot else None
        self.norm = nn.LayerNorm(self.d)
        self.head = nn.Linear(self.d, 3)
        nn.init.zeros_(self.head.weight)   # start from the all-zero (root-relative) pose: 182 vs 218 mm on
        nn.init.zeros_(self.head.bias)     # validation after 200 steps in a development run
        self.sigma = nn.Sequential(nn.Linear(self.d, self.d), nn.GELU(), nn.Linear(self.d, 1))

    def _spatial(self, i: int, h: Tensor) -> Tensor:
        b, f, j, d = h.shape
        x = h.reshape(b * f * j, d)
        cu = uniform_cu(b * f, j, h.device)
        if self.ktp:
            bias = -F.softplus(self.hop_slope[i])[:, None, None] * self.hops + self.pair_bias[i]
            return self.spatial[i](x, cu, j, None, bias[None]).reshape(b, f, j, d)
        return self.spatial[i](x, cu, j).reshape(b, f, j, d)

    def _temporal(self, i: int, h: Tensor, frames: Tensor) -> Tensor:
        b, f, j, d = h.shape
        x = h.permute(0, 2, 1, 3).reshape(b * j * f, d)
        pos = frames[:, None, :].expand(b, j, f).reshape(-1)
        cos_sin = rotary_cos_sin(pos, d // self.heads, dtype=h.dtype) if self.temporal[i].attn.rotary else None
        cu = uniform_cu(b * j, f, h.device)
        if self.ktp:
            offset = (frames[:, :, None] - frames[:, None, :]).abs() / 10.0          # [B, F, F]
            bias = -F.softplus(self.time_slope[i])[None, :, None, None] * offset[:, None]
            bias = bias[:, None].expand(b, j, self.heads, f, f).reshape(b * j, self.heads, f, f)
            x = self.temporal[i](x, cu, f, cos_sin, bias)
        else:
            x = self.temporal[i](x, cu, f, cos_sin)
        return x.reshape(b, j, f, d).permute(0, 2, 1, 3)

    def _prune(self, h: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        """[B, F, J, D] tokens and their frame times -> the `keep` tokens (and times) the pruned blocks run on."""
        b, f, j, d = h.shape
        if self.select == "pool":
            pooled = F.adaptive_avg_pool1d(h.permute(0, 2, 3, 1).reshape(b, j * d, f), self.keep)
            return (pooled.view(b, j, d, self.keep).permute(0, 3, 1, 2),
                    F.adaptive_avg_pool1d(frames[:, None], self.keep)[:, 0])
        idx = (dpc_knn_select(h.mean(2), self.keep, self.knn) if self.select == "cluster"
               else uniform_select(b, f, self.keep, h.device))
        return torch.gather(h, 1, idx[:, :, None, None].expand(b, self.keep, j, d)), torch.gather(frames, 1, idx)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        x = batch["inputs"]
        b, f, j, _ = x.shape
        frames = batch.get("frames")
        frames = (torch.arange(f, device=x.device, dtype=x.dtype)[None].expand(b, f) if frames is None
                  else frames.to(x.dtype))
        if self.rel_inputs:
            x = torch.cat([x, x[..., :2] - x[..., :1, :2]], dim=-1)
        h = self.embed(x) + self.joint_embed
        full = full_frames = None
        for i in range(self.depth):
            h = self._temporal(i, self._spatial(i, h), frames)
            if self.hot and i == self.prune_after and self.keep < f:
                full, full_frames = h, frames
                h, frames = self._prune(h, frames)
        if full is not None:
            h = self.recover(full, full_frames, h, frames)
        h = self.norm(h)
        xyz = self.head(h)
        xyz = xyz - xyz[:, :, :1]          # root-relative by construction: the pelvis is the origin
        return torch.cat([xyz, self.sigma(h.detach())], dim=-1)


def build_model(meta: Mapping[str, Any]) -> PoseLifter:
    return PoseLifter(meta)


def lifting_loss(out: Tensor, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """MPJPE (metres) over the real (unpadded) frames, plus the Gaussian NLL of the error under the predicted
    sigma (the error is detached: the uncertainty head learns the error, it does not shape it)."""
    mask = batch["mask"].to(out.dtype)                                    # [B, F]
    err = (out[..., :3] - batch["target"]).norm(dim=-1)                   # [B, F, J]
    n = mask.sum().clamp_min(1) * out.shape[2]
    mpjpe = (err * mask[..., None]).sum() / n
    log_sigma = out[..., 3].clamp(-8, 3)
    nll = (0.5 * err.detach() ** 2 * torch.exp(-2 * log_sigma) + 3 * log_sigma)
    nll = (nll * mask[..., None]).sum() / n
    return mpjpe + 1e-3 * nll, {"mpjpe_mm": mpjpe * 1000, "nll": nll}


CHI3_90 = 2.5003   # 90% quantile of the chi distribution with 3 degrees of freedom


def sigma_scale(errors: np.ndarray, sigmas: np.ndarray, coverage: float = 0.9) -> float:
    """Calibration on validation: the factor s making |error| <= CHI3_90 * s * sigma hold for `coverage` of
    the joints (an isotropic Gaussian with per-axis std s * sigma would give exactly that)."""
    ratio = np.asarray(errors, float).ravel() / np.maximum(np.asarray(sigmas, float).ravel(), 1e-9)
    return float(np.quantile(ratio, coverage) / CHI3_90) if ratio.size else 1.0


def ensemble_sigma(outs: np.ndarray) -> np.ndarray:
    """Members' outputs [M, T, 17, 4] -> per-axis sigma [T, 17] (metres, before calibration): the mean predicted
    variance plus the variance of the members' coordinates."""
    alea = np.mean(np.exp(2 * np.clip(outs[..., 3], -8, 3)), axis=0)
    return np.sqrt(alea + outs[..., :3].var(0).mean(-1))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

