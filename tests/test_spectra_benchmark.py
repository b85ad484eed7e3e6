"""benchmarks/spectra.py on tiny settings: it runs, writes rows with the documented names and fields, and
every speed ratio of a test set divides by that set's one reference timing."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_spectra_benchmark_writes_the_documented_rows(tmp_path, monkeypatch):
    from benchmarks import common, spectra
    monkeypatch.setattr(common, "ROOT", tmp_path)          # results/spectra/benchmark.json goes under tmp_path
    rows = spectra.main(["--n-train", "256", "--epochs", "1", "--pixels", "6", "--skip-nir", "--models", "sdpa", "diff",
                         "--out", str(tmp_path / "w"),
                         "--set", "lifetime.n_val=64", "--set", "train.max_steps=2", "--set", "train.batch_size=64",
                         "--set", "lifetime.timing_pixels=256", "--set", "encoder.d_model=16",
                         "--set", "lifetime.baselines=[mle,fast_mle,bayes,prior_median]"])
    written = json.loads((tmp_path / "results" / "spectra" / "benchmark.json").read_text())
    assert len(written) == len(rows) > 0
    for row in written:
        assert list(row)[:7] == ["task", "dataset", "split", "method", "metric", "value", "machine"]
        assert row["threads"] == 1 and row["task"] == "lifetime" and row["split"] == "test"
    datasets = {r["dataset"] for r in written}
    assert {"sim-100-1000", "sim-ptu", "sim-image-40mhz", "sim-1k-10k", "sim-10k-100k", "sim-prior-shift",
            "sim-ood-irf"} == datasets
    methods = {r["method"] for r in written}
    assert {"sciformer-sdpa", "sciformer-diff", "mle", "fast_mle", "bayes", "prior_median"} == methods
    value = {(r["dataset"], r["method"], r["metric"]): r["value"] for r in written}
    for d in datasets:
        for m in methods:
            assert all((d, m, f"{t}_mae") in value for t in ("tau1", "tau2", "a", "tau_m"))
        assert (d, "prior_median", "pixels_per_s") not in value                    # a constant is not timed
        for m in ("sciformer-sdpa", "sciformer-diff", "mle", "fast_mle", "bayes"):
            speed = value[(d, m, "pixels_per_s")]
            assert value[(d, m, "pixels_per_s_min")] <= speed <= value[(d, m, "pixels_per_s_max")]
            for ref in ("mle", "fast_mle"):   # one reference timing per set, the same for every row
                assert value[(d, m, f"speedup_vs_{ref}")] == pytest.approx(speed / value[(d, ref, "pixels_per_s")])
        assert value[(d, "mle", "speedup_vs_mle")] == pytest.approx(1.0)
