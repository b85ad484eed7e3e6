"""The field's speech-quality metrics: PESQ (ITU-T P.862, narrowband at 8 kHz / P.862.2 wideband at 16 kHz,
`pesq`), STOI (`pystoi`), SI-SDR (Le Roux et al. 2019), DNSMOS P.835 OVRL (`speechmos`'s shipped ONNX models,
run offline on one thread), and the real-time factor (seconds of audio per second of compute)."""
from __future__ import annotations

import numpy as np

DNSMOS_RATE = 16000


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = 1e-10) -> float:
    """Scale-invariant SDR in dB (both signals zero-meaned; the reference scaled to fit the estimate)."""
    ref = np.asarray(reference, np.float64) - np.mean(reference)
    est = np.asarray(estimate, np.float64) - np.mean(estimate)
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = alpha * ref
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(est - target, est - target) + eps)))


def pesq_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """PESQ MOS-LQO: narrowband at 8 kHz, wideband at 16 kHz. NaN where PESQ finds no utterance."""
    from pesq import PesqError, pesq
    mode = "nb" if sample_rate == 8000 else "wb"
    try:
        return float(pesq(sample_rate, np.asarray(reference, np.float64), np.asarray(estimate, np.float64), mode))
    except PesqError:
        return float("nan")


def stoi_score(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    from pystoi import stoi
    return float(stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64), sample_rate, extended=False))


class Dnsmos:
    """DNSMOS P.835 (Reddy et al. 2022) from speechmos's wheel, with one-thread ONNX sessions (speechmos's own
    sessions take every core). Narrowband audio is resampled to the model's 16 kHz (it then scores the
    missing 4-8 kHz band as a defect, which is what a listener of narrowband speech hears too)."""

    def __init__(self) -> None:
        from pathlib import Path

        import onnxruntime as ort
        from speechmos import dnsmos
        models = Path(dnsmos.__file__).parent / "dnsmos_models"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.model = dnsmos.DNSMOS.__new__(dnsmos.DNSMOS)
        self.model.primary_model_path = str(models / "sig_bak_ovr.onnx")
        self.model.onnx_sess = ort.InferenceSession(str(models / "sig_bak_ovr.onnx"), opts,
                                                    providers=["CPUExecutionProvider"])
        self.model.p808_onnx_sess = ort.InferenceSession(str(models / "model_v8.onnx"), opts,
                                                         providers=["CPUExecutionProvider"])

    def __call__(self, audio: np.ndarray, sample_rate: int) -> float:
        import librosa
        x = np.asarray(audio, np.float32)
        if sample_rate != DNSMOS_RATE:
            x = librosa.resample(x, orig_sr=sample_rate, target_sr=DNSMOS_RATE)
        x = np.clip(x, -1.0, 1.0)
        if not np.any(x):
            return float("nan")
        return float(self.model(x, DNSMOS_RATE, False)["ovrl_mos"])


def quality(reference: np.ndarray, estimate: np.ndarray, sample_rate: int, dnsmos: Dnsmos | None = None) -> dict:
    """Every per-clip metric for one enhanced clip."""
    n = min(len(reference), len(estimate))
    ref, est = reference[:n], estimate[:n]
    out = {"pesq": pesq_score(ref, est, sample_rate), "stoi": stoi_score(ref, est, sample_rate),
           "si_sdr": si_sdr(ref, est)}
    if dnsmos is not None:
        out["dnsmos"] = dnsmos(est, sample_rate)
    return out
