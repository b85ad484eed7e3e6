"""Model vs baselines on the same test clips, in the same run.

Enhancement: the fixed test mixtures (unseen voices, unseen prompts) per SNR bucket; PESQ, STOI and SI-SDR per
clip (averaged per bucket), DNSMOS OVRL per bucket, real-time factor (seconds of audio per wall second on one
thread, measured on `enhance.rtf_seconds` of test audio; `realtime_factor_cpu` divides by this process's CPU
seconds instead, which a shared machine's load does not inflate).
Baselines' settings come from the validation mixtures. Classification: the test-prompt clips of every voice.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from core.metrics import accuracy, log_loss, metric_rows
from domains.audio import baselines as B
from domains.audio import classify as CL
from domains.audio import streaming as ST
from domains.audio.atten_limit import enhancer
from domains.audio.classify_pool import pooled
from domains.audio.classify_task import encoder_probabilities, fold_examples
from domains.audio.metrics import Dnsmos, quality
from domains.audio.prepare import TEST, VAL, load_mixtures, load_prepared

DNSMOS_WINDOW_S = 9.01


def dataset_name(sample_rate: int) -> str:
    return f"asterisk-prompts-{sample_rate // 1000}k"


def split_name(snr: float) -> str:
    return f"unseen-voices-snr{snr:g}"


def model_enhancer(members) -> Callable[[np.ndarray], np.ndarray]:
    """The ensemble's enhancement (with the run's attenuation limit): each member streams the clip; the
    waveforms are averaged."""
    model = enhancer(members)
    return lambda noisy: ST.enhance_array(model, noisy, members[0].metadata["task"]["chunk_seconds"])


def realtime_factor(fn: Callable[[np.ndarray], np.ndarray], clips: list[np.ndarray], sr: int,
                    seconds: float) -> tuple[float, float]:
    """Seconds of audio per second of `fn` on one torch thread, over the first `seconds` of clips: (per wall
    second, per CPU second of this process). On a shared machine the wall figure drops with the load; the CPU
    figure is what one dedicated core would give."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn(clips[0][: sr // 2])                                   # warm-up (lazy imports, allocator)
        done, t0, c0 = 0, time.perf_counter(), time.process_time()
        for c in clips:
            fn(c)
            done += len(c)
            if done >= seconds * sr:
                break
        return done / sr / (time.perf_counter() - t0), done / sr / max(time.process_time() - c0, 1e-9)
    finally:
        torch.set_num_threads(threads)


def dnsmos_bucket(dnsmos: Dnsmos, clips: list[np.ndarray], sr: int) -> float:
    """DNSMOS OVRL of a bucket: the clips joined end to end, scored in non-overlapping 9.01 s windows (the
    model's input length; speechmos would score a 2 s clip by looping it to 9 s)."""
    audio = np.concatenate(clips)
    win = int(DNSMOS_WINDOW_S * sr)
    starts = range(0, max(1, len(audio) - win + 1), win)
    return float(np.nanmean([dnsmos(audio[s:s + win], sr) for s in starts]))


def evaluate_enhance(cfg, prepared: Path, members, progress=None) -> tuple[list[dict], pd.DataFrame]:
    manifest, _, sr = load_prepared(prepared)
    test, val = load_mixtures(Path(prepared) / TEST), load_mixtures(Path(prepared) / VAL)
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sciformer": model_enhancer(members),
                                                              "noisy": lambda x: x}
    settings = {"sciformer": {"atten_limit_db": (members[0].metadata.get("calibration") or {}).get("atten_limit_db")}}
    for name in cfg["enhance.baselines"]:
        settings[name] = B.choose_settings(name, val["noisy"], val["clean"], sr)
        methods[name] = (lambda n, s: lambda x: B.enhance(n, x, sr, s))(name, settings[name])
    dnsmos = Dnsmos() if cfg["enhance.dnsmos"] else None
    records, rows = [], []
    ds = dataset_name(sr)
    first_bucket = [x for x, s in zip(test["noisy"], test["snr"]) if s == test["snr"][0]]
    for name, fn in methods.items():
        outputs = [fn(x) for x in test["noisy"]]
        for k, (est, ref) in enumerate(zip(outputs, test["clean"])):
            clip = int(test["clip"][k])
            records.append({"method": name, "snr": float(test["snr"][k]), "kind": str(test["kind"][k]),
                            "voice": manifest.voice[clip], "prompt": manifest.prompt[clip], **quality(ref, est, sr)})
        rtf = realtime_factor(fn, first_bucket, sr, float(cfg["enhance.rtf_seconds"])) if name != "noisy" else None
        frame = pd.DataFrame([r for r in records if r["method"] == name])
        for snr in sorted(set(test["snr"].tolist())):
            part = frame[frame.snr == snr]
            values = {m: float(np.nanmean(part[m])) for m in ("pesq", "stoi", "si_sdr")}
            if dnsmos is not None:
                values["dnsmos"] = dnsmos_bucket(dnsmos, [o for o, s in zip(outputs, test["snr"]) if s == snr], sr)
            if rtf is not None:
                values["realtime_factor"], values["realtime_factor_cpu"] = rtf
            rows += metric_rows("enhance", ds, split_name(snr), name, values, clips=int(len(part)))
        if progress:
            progress(name)
    rows = [{**r, "settings": settings.get(r["method"])} if r["method"] in settings else r for r in rows]
    return rows, pd.DataFrame(records)


def evaluate_classify(cfg, prepared: Path, members, cnn_members=None) -> tuple[list[dict], pd.DataFrame]:
    manifest, clips, sr = load_prepared(prepared)
    meta = members[0].metadata["task"]
    classes = meta["classes"]
    test = fold_examples(manifest, clips, classes, "test")
    y = np.array([e["y"] for e in test])
    feats = {f: np.stack([CL.mfcc_stats(e["audio"], sr) for e in fold_examples(manifest, clips, classes, f)])
             for f in ("train", "val", "test")}
    networks = encoder_probabilities(members, test)
    mfcc_pool = (members[0].metadata.get("calibration") or {}).get("mfcc_pool")
    probs = {"sciformer": pooled(mfcc_pool, networks, [], sr, feats["test"])}
    if probs["sciformer"] is not networks:        # the networks alone, to show what pooling adds
        probs["sciformer-encoder"] = networks
    labels = {f: np.array([e["y"] for e in fold_examples(manifest, clips, classes, f)]) for f in ("train", "val")}
    logreg, c, _ = CL.fit_logreg(feats["train"], labels["train"], feats["val"], labels["val"], int(cfg["seed"]))
    probs["mfcc-logreg"] = logreg.predict_proba(feats["test"])
    if cnn_members:
        probs["mel-cnn"] = encoder_probabilities(cnn_members, test)     # a baseline: never pooled
    rows = []
    # your own recordings: rows name the folder, and the split is by recording (there is no shared prompt text)
    own = cfg["data.source"] == "folders"
    dataset = Path(str(cfg["data.root"])).name if own else dataset_name(sr)
    for method, p in probs.items():
        rows += metric_rows("classify", dataset, "held-out-recordings" if own else "unseen-prompts", method,
                            {"accuracy": accuracy(y, p), "log_loss": log_loss(y, p)}, clips=int(len(y)))
    idx = np.flatnonzero(manifest.prompt_fold == "test")
    out = pd.DataFrame({"label": manifest.voice[idx].values, "clip": manifest.prompt[idx].values,
                        "seconds": manifest.seconds[idx].values})
    for method, p in probs.items():
        out[f"pred_{method}"] = np.array(classes)[p.argmax(1)]
        out[f"p_true_{method}"] = p[np.arange(len(y)), y]
    return rows, out
