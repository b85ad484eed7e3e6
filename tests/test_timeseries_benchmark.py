"""benchmarks/timeseries.py on tiny settings (no neuralforecast): the rows it writes and their fields, as its
docstring documents them; and the MiniRocket classification peer on a tiny problem."""
import json

import numpy as np
import pytest

DOCUMENTED = {"task", "dataset", "split", "method", "metric", "value", "machine"}


@pytest.mark.slow
def test_benchmark_smoke(tmp_path):
    from benchmarks import timeseries as bench
    rows_path = tmp_path / "rows.json"
    bench.main(["--datasets", "vic_elec", "--tiny", "--repeats", "2", "--work", str(tmp_path / "work"),
                "--rows", str(rows_path)])
    rows = json.loads(rows_path.read_text())
    assert rows and all(DOCUMENTED <= set(r) and np.isfinite(r["value"]) for r in rows)
    forecast = [r for r in rows if r["task"].startswith("forecast-")]
    assert {r["dataset"] for r in forecast} == {"vic_elec"}
    methods = {r["method"] for r in forecast}
    assert {"sciformer-itransformer", "sciformer-itransformer-no-transformer", "closed-form", "closed-form-exo",
            "ridge", "naive"} <= methods
    splits = {r["split"].split("-")[0] for r in forecast}
    assert splits == {"val", "test", "timing"}
    ours_test = {r["metric"] for r in forecast if r["method"] == "sciformer-itransformer"
                 and r["split"].startswith("test-")}
    assert {"mse", "mae", "coverage_p10_p90", "pinball", "pinball_lagged_error", "coverage_p10_p90_none"} <= ours_test
    timing = {r["metric"]: r for r in forecast if r["split"] == "timing"}
    assert len(timing["train_command_seconds"]["runs"]) == 2   # --repeats 2
    assert timing["train_command_seconds_min"]["value"] <= timing["train_command_seconds"]["value"] \
        <= timing["train_command_seconds_max"]["value"]
    # exactly one headline per dataset/task, chosen by validation MSE among ours, the ablation and closed forms
    headline = {r["method"] for r in forecast if r.get("headline")}
    val = {r["method"]: r["value"] for r in forecast if r["split"].startswith("val-") and r["metric"] == "mse"}
    assert headline == {min(val, key=lambda m: (val[m], m))}
    classify = [r for r in rows if r["task"] == "classify"]
    assert {"sciformer-transformer", "summary-stats-logreg", "minirocket-ridgecv", "minirocket-logreg"} <= \
        {r["method"] for r in classify}
    assert {r["dataset"] for r in classify} == {"italypowerdemand"}


def test_minirocket_peer_on_a_tiny_problem():
    """Sines vs square waves of random phase and varying length: MiniRocket separates them; probabilities are
    distributions over the classes in index order."""
    from domains.timeseries.minirocket import minirocket_peers
    rng = np.random.default_rng(0)

    def series(kind, n):
        out = []
        for _ in range(n):
            t = np.arange(rng.integers(20, 40)) / 5 + rng.uniform(0, 6)
            wave = np.sin(t) if kind == 0 else np.sign(np.sin(t))
            out.append((wave + rng.normal(scale=0.1, size=len(t)))[:, None])
        return out

    train = series(0, 12) + series(1, 12)
    test = series(0, 10) + series(1, 10)
    y_train, y_test = np.repeat([0, 1], 12), np.repeat([0, 1], 10)
    peers = minirocket_peers(train, y_train, test, n_classes=2, seed=0, n_kernels=168)
    assert set(peers) == {"minirocket-ridgecv", "minirocket-logreg"}
    for name, out in peers.items():
        np.testing.assert_allclose(out["proba"].sum(1), 1.0, rtol=0, atol=1e-6)   # float32 features
        predicted = out["predicted"] if out["predicted"] is not None else out["proba"].argmax(1)
        assert np.mean(predicted == y_test) >= 0.9, name
