"""The enhancer's attenuation limit: how far any time-frequency bin may be turned down, chosen on validation.

A mask that removes every trace of noise also removes the speech that the noise covers; the listener then
hears gaps instead of faint speech, and intelligibility (STOI) can fall below the noisy input's. Classical
filters bound this with a gain floor, and DeepFilterNet exposes it as `atten_lim_db`. Here the limit is a
calibration of the trained run, not a training setting: after training, no limit and each candidate of
`enhance.atten_limits_db` enhance the validation mixtures exactly as at test time (whole clips, streamed), and
the one with the highest mean PESQ / 0.5 + STOI / 0.03 is kept. The issue's goal margins (PESQ +0.5 and
STOI +.03 over Wiener) serve as the exchange rate between the two metrics. Ties go to the weaker limit.
The choice is stored in the run's calibration.json; evaluation and prediction apply it through `enhancer`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from domains.audio import streaming as ST
from domains.audio.metrics import quality
from domains.audio.prepare import VAL, load_mixtures

log = logging.getLogger("sciformer.audio")
MARGINS = {"pesq": 0.5, "stoi": 0.03}


def gain_of(limit_db: float | None) -> float:
    """The least linear magnitude gain of a limit in dB (None: no limit, 0)."""
    return 0.0 if limit_db is None else float(10.0 ** (-float(limit_db) / 20.0))


def set_limit(members: Sequence[Any], limit_db: float | None) -> None:
    for m in members:
        m.model.min_gain = gain_of(limit_db)


def enhancer(members: Sequence[Any]):
    """The members as one enhancer (their mean waveform), with the run's calibrated attenuation limit."""
    set_limit(members, (members[0].metadata.get("calibration") or {}).get("atten_limit_db"))
    return ST.Ensemble([m.model for m in members]) if len(members) > 1 else members[0].model


def score(pesq: float, stoi: float) -> float:
    return pesq / MARGINS["pesq"] + stoi / MARGINS["stoi"]


def choose(study: list[dict]) -> float | None:
    """The rule: the highest score; `study` lists no limit first, then ever stronger limits, so ties go to
    the first (weakest) of them."""
    best = study[0]
    for row in study[1:]:
        if row["score"] > best["score"]:
            best = row
    return best["atten_limit_db"]


def calibrate_enhance(cfg, prepared: Path, members: Sequence[Any]) -> dict | None:
    """{atten_limit_db, atten_limit_validation: per candidate mean PESQ, STOI and score} (None: no candidates)."""
    limits = sorted({float(x) for x in cfg["enhance.atten_limits_db"]}, reverse=True)
    if not limits:
        return None
    val = load_mixtures(Path(prepared) / VAL)
    sr = members[0].model.sample_rate
    chunk = float(members[0].metadata["task"]["chunk_seconds"])
    model = ST.Ensemble([m.model for m in members]) if len(members) > 1 else members[0].model
    study = []
    for limit in [None, *limits]:
        set_limit(members, limit)
        q = [quality(y, ST.enhance_array(model, x, chunk), sr) for x, y in zip(val["noisy"], val["clean"])]
        pesq, stoi = (float(np.nanmean([c[k] for c in q])) for k in ("pesq", "stoi"))
        study.append({"atten_limit_db": limit, "pesq": pesq, "stoi": stoi, "score": score(pesq, stoi)})
        log.info("attenuation limit %s: validation PESQ %.3f, STOI %.4f, score %.3f",
                 "none" if limit is None else f"{limit:g} dB", pesq, stoi, study[-1]["score"])
    set_limit(members, None)
    chosen = choose(study)
    log.info("attenuation limit chosen on validation: %s", "none" if chosen is None else f"{chosen:g} dB")
    return {"atten_limit_db": chosen, "atten_limit_validation": study}
