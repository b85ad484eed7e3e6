"""Enhancing any length in overlapping chunks with overlap-add, so memory stays flat.

The enhancer's receptive field along time is bounded (`context_frames`: attention works inside blocks), and
its attention blocks and tokens sit at fixed multiples of `align_frames` from the start of its input. A chunk
therefore starts at a multiple of that alignment and reads `margin` extra samples either side (at least the
receptive field): in its valid part it computes exactly what whole-file processing computes. Neighbouring
chunks overlap over `crossfade` samples of their valid parts and are cross-faded with complementary linear
ramps (weights summing to 1), so the result equals whole-file processing up to float rounding, whatever the
file's length (tests/test_audio_enhance.py checks this).

Level: the model was trained on unit-RMS input; the caller passes one gain for the whole file (measured in a
first streaming pass), so every chunk sees the same scaling as the whole file would. A model with noise features
also gets the whole file's noise profile, from one more streaming pass (domains/audio/noise_profile.py).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from domains.audio import noise_profile as NP


def plan(model, chunk_seconds: float) -> dict[str, int]:
    """Chunk geometry in samples: core (hop between chunk starts), margin, crossfade; all aligned."""
    align = model.align_frames * model.hop
    margin = -(-(model.context_frames * model.hop) // align) * align
    core = max(1, int(round(chunk_seconds * model.sample_rate / align))) * align
    return {"core": core, "margin": margin, "crossfade": align}


@torch.no_grad()
def enhance_stream(model, read: Callable[[int, int], np.ndarray], total: int, write: Callable[[np.ndarray], None],
                   gain: float, chunk_seconds: float = 4.0) -> None:
    """Enhance samples [0, total) of a source: read(start, stop) -> float32 [n, channels]; write(block [n, channels])
    receives the enhanced samples in order. Channels are enhanced independently (as a batch)."""
    g = plan(model, chunk_seconds)
    core, margin, fade = g["core"], g["margin"], g["crossfade"]
    device = next(model.parameters()).device
    short = total <= core + 2 * (margin + fade)         # short enough: one pass over the whole file
    x = read(0, total) if short else None                # read once: the noise profile reuses it
    noise = None
    if getattr(model, "noise_features", False):
        source = (lambda a, b: x[a:b]) if short else read
        noise = torch.from_numpy(NP.profile(source, total, model.n_fft, model.hop, gain)).to(device)
    if short:
        write(_run(model, x, gain, device, noise))
        return
    ramp_up = ((np.arange(2 * fade) + 0.5) / (2 * fade)).astype(np.float32)[:, None]
    pending = None                                       # the previous chunk's fading-out tail [2*fade, ch]
    n_chunks = -(-total // core)
    for i in range(n_chunks):
        start, stop = i * core, min(total, (i + 1) * core)
        lo, hi = max(0, start - margin - fade), min(total, stop + margin + fade)
        y = _run(model, read(lo, hi), gain, device, noise)
        first = i == 0
        last = i == n_chunks - 1
        keep_lo = start if first else start - fade        # this chunk's valid span that reaches the output
        keep_hi = stop if last else stop + fade
        part = y[keep_lo - lo:keep_hi - lo]
        if not first:                                     # cross-fade with the previous chunk's tail
            head = part[:2 * fade] * ramp_up + pending * ramp_up[::-1]
            part = np.concatenate([head, part[2 * fade:]])
        if last:
            write(part)
        else:
            write(part[:-2 * fade])
            pending = part[-2 * fade:]


class Ensemble(torch.nn.Module):
    """Several enhancers as one: the mean of their outputs, with the widest context and coarsest alignment
    (so one stream serves every member and memory stays flat)."""

    def __init__(self, models: list):
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        first = models[0]
        self.sample_rate, self.hop, self.n_fft = first.sample_rate, first.hop, first.n_fft
        self.align_frames = int(np.lcm.reduce([m.align_frames for m in models]))
        self.context_frames = max(m.context_frames for m in models)
        self.noise_features = any(getattr(m, "noise_features", False) for m in models)

    @torch.no_grad()
    def enhance(self, wave: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([m.enhance(wave, noise) for m in self.models]).mean(0)


def _run(model, x: np.ndarray, gain: float, device, noise: torch.Tensor | None = None) -> np.ndarray:
    """[n, ch] -> enhanced [n, ch] (channels as the batch; noise: the whole file's profile [ch, Q, F])."""
    wave = torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.float32)).to(device) * gain
    return (model.enhance(wave, noise) / gain).cpu().numpy().T


def enhance_array(model, audio: np.ndarray, chunk_seconds: float = 4.0) -> np.ndarray:
    """In-memory convenience: [n] or [n, ch] -> enhanced, same shape (chunked exactly as a file would be)."""
    x = audio[:, None] if audio.ndim == 1 else audio
    out: list[np.ndarray] = []
    enhance_stream(model, lambda a, b: x[a:b], len(x), out.append, level_gain(x), chunk_seconds)
    y = np.concatenate(out) if out else np.zeros_like(x)
    return y[:, 0] if audio.ndim == 1 else y


def level_gain(x: np.ndarray, floor: float = 1e-4) -> float:
    """The unit-RMS gain of a whole signal (the model's input level); a floor keeps silence finite."""
    rms = float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))) if x.size else 0.0
    return 1.0 / max(rms, floor)
