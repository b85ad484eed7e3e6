"""The molecule model on the shared core: SMILES tokens -> packed encoder -> heads.

One module holds every head so pretrained weights load by name into the fine-tuning model:
masked-token head + physicochemical-property head (pretraining), property-regression head (fine-tuning).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from core.encoder import EncoderConfig, RegressionHead, TokenEncoder, TokenHead
from core.packing import pack_token_lists, segment_mean

# RDKit properties predicted during pretraining (cheap, and the domain-adaptation paper found such a
# multi-task step helps downstream property prediction).
PRETRAIN_PROPERTIES = ("MolLogP", "TPSA", "MolMR", "MolWt", "NumHDonors", "NumHAcceptors",
                       "NumRotatableBonds", "RingCount", "FractionCSP3", "HeavyAtomCount")


class GraphEncoder(nn.Module):
    """Optional graph view (features.graph_dim > 0): a small GINE network over rdkit atom/bond features,
    mean-pooled per molecule and handed to the head beside the descriptors."""

    def __init__(self, dim: int, layers: int = 3):
        super().__init__()
        from torch_geometric.nn import GINEConv

        from domains.molecules.features import ATOM_FEATURE_DIM, BOND_FEATURE_DIM
        self.inp = nn.Linear(ATOM_FEATURE_DIM, dim)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)), edge_dim=BOND_FEATURE_DIM)
            for _ in range(layers))

    def forward(self, graph) -> torch.Tensor:
        from torch_geometric.nn import global_mean_pool
        h = self.inp(graph.x)
        for conv in self.convs:
            h = h + nn.functional.gelu(conv(h, graph.edge_index, graph.edge_attr))
        return global_mean_pool(h, graph.batch, size=graph.num_graphs)


class MoleculeModel(nn.Module):
    def __init__(self, vocab_size: int, encoder: Mapping[str, Any], n_targets: int = 0, n_extra: int = 0,
                 n_props: int = 0, hidden: int = 256, dropout: float = 0.1, pad_id: int = 0, graph_dim: int = 0):
        super().__init__()
        cfg = EncoderConfig.from_dict(dict(encoder))
        self.encoder = TokenEncoder(vocab_size, cfg, pad_id=pad_id)
        self.mlm_head = TokenHead(cfg.d_model, vocab_size)
        self.prop_head = RegressionHead(cfg.d_model, n_props, hidden, dropout) if n_props else None
        self.graph = GraphEncoder(graph_dim) if graph_dim else None
        self.head = (RegressionHead(cfg.d_model, n_targets, hidden, dropout, n_extra + graph_dim)
                     if n_targets else None)

    def forward(self, batch: Mapping[str, Any]):
        h = self.encoder(batch["ids"], batch["cu_seqlens"], batch["max_seqlen"])
        pooled = segment_mean(h, batch["cu_seqlens"])
        if "mlm_positions" in batch:
            props = self.prop_head(pooled) if self.prop_head is not None else None
            return {"mlm": self.mlm_head(h[batch["mlm_positions"]]), "props": props}
        extra = [t for t in (batch.get("extra"), self.graph(batch["graph"]) if self.graph else None) if t is not None]
        return self.head(pooled, torch.cat(extra, dim=-1) if extra else None)


def collate_regression(examples: list[dict]) -> dict[str, Any]:
    ids, cu, max_len = pack_token_lists([e["ids"] for e in examples])
    batch: dict[str, Any] = {"ids": ids, "cu_seqlens": cu, "max_seqlen": max_len, "size": len(examples)}
    if examples and examples[0].get("extra") is not None:
        batch["extra"] = torch.from_numpy(np.stack([e["extra"] for e in examples])).float()
    if examples and examples[0].get("graph") is not None:
        from torch_geometric.data import Batch
        batch["graph"] = Batch.from_data_list([e["graph"] for e in examples])
    if examples and examples[0].get("y") is not None:
        batch["y"] = torch.from_numpy(np.stack([e["y"] for e in examples])).float()
    return batch


def regression_loss(out: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
    """MSE over the known targets: a molecule of a multi-target set may lack some (NaN), as in chemprop."""
    y = batch["y"]
    known = ~torch.isnan(y)
    if bool(known.all()):
        return nn.functional.mse_loss(out.float(), y)
    return ((out.float() - torch.nan_to_num(y)) ** 2 * known).sum() / known.sum().clamp_min(1)


class MaskedTokenCollate:
    """BERT masking (80% <mask>, 10% random token, 10% unchanged) of `mask_prob` of non-special tokens.

    Uses torch's global RNG, which the trainer seeds, so a seed fixes the masks too.
    """

    def __init__(self, mask_id: int, vocab_size: int, special_ids: frozenset[int], mask_prob: float):
        self.mask_id, self.vocab_size, self.mask_prob = mask_id, vocab_size, mask_prob
        self.special = torch.tensor(sorted(special_ids))

    def __call__(self, examples: list[dict]) -> dict[str, Any]:
        batch = collate_regression([{"ids": e["ids"]} for e in examples])
        ids = batch["ids"]
        candidates = ~torch.isin(ids, self.special)
        chosen = candidates & (torch.rand(ids.shape) < self.mask_prob)
        if not chosen.any():  # every batch must teach something; pick one token per batch at least
            chosen[torch.nonzero(candidates)[0]] = True
        labels = ids[chosen].clone()
        roll = torch.rand(ids.shape)
        corrupted = ids.clone()
        corrupted[chosen & (roll < 0.8)] = self.mask_id
        random_tokens = torch.randint(len(self.special), self.vocab_size, ids.shape)
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        corrupted[swap] = random_tokens[swap]
        batch.update(ids=corrupted, mlm_positions=torch.nonzero(chosen).squeeze(1), mlm_labels=labels)
        if examples[0].get("props") is not None:
            batch["props"] = torch.from_numpy(np.stack([e["props"] for e in examples])).float()
        return batch


def pretrain_loss(property_weight: float):
    def loss(out: Mapping[str, Any], batch: Mapping[str, Any]) -> torch.Tensor:
        value = nn.functional.cross_entropy(out["mlm"].float(), batch["mlm_labels"])
        if property_weight and out["props"] is not None:
            value = value + property_weight * nn.functional.mse_loss(out["props"].float(), batch["props"])
        return value
    return loss



def dense_linear_forward(model: MoleculeModel, ids: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    """Inference for a batch of molecules that all have the same token count: ids [B, L] -> [B, K].

    The same computation as `forward` with a linear-attention backend (elu+1 features, rotary in the
    numerator, unrotated normalizer), but on the dense [B, L, D] layout: with equal lengths the packed batch
    is a plain reshape, so no unpack/scatter/segment-sum is needed and every step is a batched matmul or an
    elementwise op (prediction groups molecules by length to use it). Eval mode only (no dropout)."""
    from core.attention.linear import LINEAR_EPS, feature_map
    from core.rotary import apply_rotary, rotary_cos_sin
    tok = model.encoder
    cfg = tok.cfg
    batch, length = ids.shape
    heads, dh = cfg.n_heads, cfg.d_model // cfg.n_heads
    x = tok.embed(ids)
    cos = sin = None
    if cfg.rotary:
        cos, sin = rotary_cos_sin(torch.arange(length, device=ids.device), dh, dtype=x.dtype)
        cos, sin = cos.repeat(batch, 1), sin.repeat(batch, 1)   # [B*L, Dh], as apply_rotary takes them
    for block in tok.encoder.blocks:
        qkv = block.attn.qkv(block.norm1(x)).view(batch * length, 3, heads, dh)
        q, k, v = qkv.unbind(dim=1)                             # [B*L, H, Dh]
        fq, fk = feature_map(q), feature_map(k)
        rq, rk = (apply_rotary(t, cos, sin) for t in (fq, fk)) if cos is not None else (fq, fk)
        shape = (batch, length, heads, dh)
        kv = torch.einsum("blhd,blhe->bhde", rk.view(shape), v.view(shape))
        num = torch.einsum("blhd,bhde->blhe", rq.view(shape), kv)
        denom = torch.einsum("blhd,bhd->blh", fq.view(shape), fk.view(shape).sum(1)).unsqueeze(-1) + LINEAR_EPS
        x = x + block.attn.out((num / denom).reshape(batch, length, cfg.d_model))
        x = x + block.ffn(block.norm2(x))
    pooled = tok.encoder.norm(x).mean(dim=1)
    return model.head(pooled, extra)


def dense_path_applies(model: MoleculeModel) -> bool:
    """The dense path covers linear-attention encoders without the graph view (the default model)."""
    from core.attention import available_attention
    backend = available_attention().get(model.encoder.cfg.attention)
    return backend is not None and backend.kind == "linear" and model.graph is None and model.head is not None
