"""Speech enhancement in the STFT domain, MP-SENet's idea (Lu, Ai & Ling 2023) on the core encoder.

    noisy wave -> STFT -> (|X|^0.3, |X|^0.3 cos phi, |X|^0.3 sin phi)            [B, 3, T, F]
      (+ with noise_features: the file's noise profile per bin, compressed, and the log a-posteriori SNR
         against it: what the Wiener filter knows, from every frame of the file; noise_profile.py)
      -> patches of 2 frames x 4 bins embedded as tokens                          [B, T/2, F/4, C]
      -> time-frequency transformer blocks on core.encoder.Encoder, each a time layer (attention along frames,
         inside blocks of `block_tokens` whose boundaries shift by half a block in every other TF block, as
         Swin's windows: linear cost in the file length and a bounded receptive field, so long files stream
         in chunks and give what whole-file processing gives) and a frequency layer (attention across the
         bands of one frame); packed `cu_seqlens` sequences, rotary positions per sequence
      -> magnitude decoder: a bounded mask (learnable sigmoid, up to beta=2) on the compressed magnitude
      -> phase decoder: two outputs (pseudo real and imaginary) whose atan2 is the phase ("parallel phase
         estimation"), so the phase is never regressed directly across its wrap
      -> enhanced spectrum -> inverse STFT.
Decoders unfold each token back into its bins and join every bin's own input features (skip connection).
Everything is channels-last matrix products (on one CPU core the 2-D convolutions of the original were the
slowest part), and nothing pools over time (no InstanceNorm): chunks are processed exactly as the whole file.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from core.encoder import Encoder, EncoderConfig
from core.packing import lengths_to_cu_seqlens
from domains.audio import noise_profile as NP
from domains.audio import spectral as S


def block_lengths(frames: int, block: int, offset: int) -> list[int]:
    """Split `frames` into blocks whose boundaries sit at multiples of `block` shifted by `offset`."""
    lengths, start = [], 0
    edge = offset % block or block
    while start < frames:
        end = min(frames, edge)
        lengths.append(end - start)
        start, edge = end, edge + block
    return lengths


class TFBlock(nn.Module):
    """Attention along time (inside shifted blocks), then across frequency bands; x [B, T, F, C]."""

    def __init__(self, enc: EncoderConfig, block_frames: int, offset: int):
        super().__init__()
        self.time = Encoder(enc)
        # bands sit at fixed frequencies: absolute band embeddings (added at the input) instead of rotary
        self.freq = Encoder(EncoderConfig.from_dict({**enc.to_dict(), "rotary": False}))
        self.block_frames, self.offset = block_frames, offset

    def forward(self, x: Tensor) -> Tensor:
        b, t, f, c = x.shape
        # time layer: one packed sequence per (example, band, block)
        seq = x.permute(0, 2, 1, 3).reshape(b * f * t, c)
        lengths = torch.tensor(block_lengths(t, self.block_frames, self.offset) * (b * f), device=x.device)
        seq = self.time(seq, lengths_to_cu_seqlens(lengths), int(lengths.max()))
        x = seq.reshape(b, f, t, c).permute(0, 2, 1, 3)
        # frequency layer: one packed sequence per (example, frame)
        lengths = torch.full((b * t,), f, device=x.device)
        seq = self.freq(x.reshape(b * t * f, c), lengths_to_cu_seqlens(lengths), f)
        return seq.reshape(b, t, f, c)


def to_patches(x: Tensor, tp: int, fp: int) -> Tensor:
    """[B, T, F, D] -> [B, T', F', tp*fp*D]: tokens of tp frames x fp bins (zero-padded at the ends)."""
    b, t, f, d = x.shape
    t2, f2 = -(-t // tp), -(-f // fp)
    x = nn.functional.pad(x, (0, 0, 0, f2 * fp - f, 0, t2 * tp - t))
    return x.reshape(b, t2, tp, f2, fp, d).permute(0, 1, 3, 2, 4, 5).reshape(b, t2, f2, tp * fp * d)


def from_patches(x: Tensor, tp: int, fp: int, t: int, f: int) -> Tensor:
    """Inverse of to_patches: [B, T', F', tp*fp*D] -> [B, t, f, D]."""
    b, t2, f2, _ = x.shape
    x = x.reshape(b, t2, f2, tp, fp, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, t2 * tp, f2 * fp, -1)
    return x[:, :t, :f]


class BinDecoder(nn.Module):
    """Tokens [B, T', F', C] -> per-bin outputs [B, T, F, out]: each token unfolds into its frames x bins, plus
    a projection of that bin's own input features (the skip connection), then one pointwise layer."""

    def __init__(self, channels: int, patch: tuple[int, int], hidden: int, out: int, features: int = 3):
        super().__init__()
        self.patch = patch
        self.unpatch = nn.Linear(channels, patch[0] * patch[1] * hidden)
        self.skip = nn.Linear(features, hidden, bias=False)
        self.act = nn.LeakyReLU(0.1)   # per-bin tensors are the largest: the cheapest nonlinearity
        self.out = nn.Linear(hidden, out)

    def forward(self, h: Tensor, bins: Tensor) -> Tensor:
        x = from_patches(self.unpatch(h), *self.patch, bins.shape[1], bins.shape[2])
        return self.out(self.act(x + self.skip(bins)))


class SpeechEnhancer(nn.Module):
    def __init__(self, sample_rate: int, encoder: Mapping[str, Any], n_blocks: int = 2, block_tokens: int = 16,
                 patch: tuple[int, int] = (2, 4), hidden: int = 16, mask_beta: float = 2.0,
                 noise_features: bool = False):
        super().__init__()
        frames = S.frame_setup(sample_rate)
        self.sample_rate, self.n_fft, self.hop = sample_rate, frames["n_fft"], frames["hop"]
        enc = EncoderConfig.from_dict({**dict(encoder), "n_layers": 1})
        c = enc.d_model
        self.patch = tuple(patch)
        tp, fp = self.patch
        self.noise_features = bool(noise_features)
        features = 3 + (1 + len(NP.QUANTILES) if self.noise_features else 0)
        self.embed = nn.Sequential(nn.Linear(tp * fp * features, c), nn.LayerNorm(c))
        self.band = nn.Parameter(torch.zeros(-(-(self.n_fft // 2 + 1) // fp), c))
        self.blocks = nn.ModuleList(TFBlock(enc, block_tokens, (k % 2) * block_tokens // 2) for k in range(n_blocks))
        self.mag_decoder = BinDecoder(c, self.patch, hidden, 1, features)
        self.pha_decoder = BinDecoder(c, self.patch, hidden, 2, features)
        self.mask_beta = mask_beta
        self.mask_slope = nn.Parameter(torch.ones(self.n_fft // 2 + 1))   # MP-SENet's learnable sigmoid, per bin
        # attenuation limit (set after training from the run's calibration, see atten_limit.py): the least
        # linear magnitude gain of any bin; 0 = none (training always runs without)
        self.min_gain = 0.0
        # Streaming: chunks must start at multiples of `align_frames` (token and attention-block boundaries
        # then coincide with the whole file's), and `context_frames` either side of a sample reach it: the
        # analysis and synthesis STFT (n_fft/2 samples = 2 frames each), one token, at most one block per TF block.
        self.align_frames = tp * block_tokens
        self.context_frames = 4 + tp + n_blocks * block_tokens * tp

    def noise_profile(self, noisy: Tensor) -> Tensor:
        """The profile of these waves taken whole [B, Q, F] (streaming passes the whole file's instead)."""
        return torch.from_numpy(NP.of_waves(noisy.detach().cpu().numpy(), self.n_fft, self.hop)).to(noisy.device)

    def spectra(self, noisy: Tensor, noise: Tensor | None = None) -> dict[str, Tensor]:
        """noisy [B, N] (already level-normalized), noise profile [B, Q, F] at the same level (None: of `noisy`)
        -> compressed magnitude, phase [B, F, T] and complex [B, F, T, 2]."""
        spec = S.stft(noisy, self.n_fft, self.hop)
        mag_c, phase = S.compress(spec)
        feats = [mag_c, mag_c * torch.cos(phase), mag_c * torch.sin(phase)]
        if self.noise_features:
            noise = self.noise_profile(noisy) if noise is None else noise
            # the a-posteriori SNR against the middle quantile, log10, clipped to [-3, 5] and scaled to ~[-1, 2]
            post = (torch.log10(spec.abs().square() + 1e-12) - torch.log10(noise[:, 1, :, None])).clamp(-3, 5) / 2
            feats += [post, *(noise[:, q, :, None].pow(S.COMPRESS / 2).expand_as(mag_c)
                              for q in range(noise.shape[1]))]
        bins = torch.stack(feats, -1).transpose(1, 2)  # [B, T, F, features]
        h = self.embed(to_patches(bins, *self.patch)) + self.band   # [B, T', F', C]
        for block in self.blocks:
            h = block(h)
        mask = self.mask_beta * torch.sigmoid(self.mask_slope * self.mag_decoder(h, bins)[..., 0]).transpose(1, 2)
        pr = self.pha_decoder(h, bins)
        est_phase = torch.atan2(pr[..., 1], pr[..., 0]).transpose(1, 2)
        if self.min_gain > 0:    # the mask acts on compressed magnitudes: a linear gain g is g ** COMPRESS here
            mask = mask.clamp_min(self.min_gain ** S.COMPRESS)
        est_mag = mag_c * mask
        return {"mag": est_mag, "phase": est_phase,
                "com": torch.stack([est_mag * torch.cos(est_phase), est_mag * torch.sin(est_phase)], -1)}

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        noisy = batch["noisy"]
        out = self.spectra(noisy, batch.get("noise"))
        out["wave"] = S.istft(S.decompress(out["mag"], out["phase"]), self.n_fft, self.hop, noisy.shape[-1])
        return out

    @torch.no_grad()
    def enhance(self, noisy: Tensor, noise: Tensor | None = None) -> Tensor:
        """[B, N] level-normalized waves (+ their files' noise profiles [B, Q, F]; None: of these waves) ->
        enhanced waves [B, N] (inference; no chunking: see streaming.py)."""
        return self.forward({"noisy": noisy, "noise": noise})["wave"]


def build(meta: Mapping[str, Any]) -> SpeechEnhancer:
    return SpeechEnhancer(meta["sample_rate"], meta["encoder"], meta["n_blocks"], meta["block_tokens"],
                          tuple(meta["patch"]), meta["hidden"],
                          noise_features=bool(meta.get("noise_features", False)))  # older runs: without
