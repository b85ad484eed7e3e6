"""Spectra prediction through the CLI with tiny trained models: image stacks -> lifetime maps with status,
NIR CSVs -> properties, and bad inputs refused with a clear error, no traceback and nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from domains.spectra.flim import FlimSetting, simulate

pytestmark = pytest.mark.slow
TINY = ["train.max_steps=3", "train.epochs=1", "train.batch_size=64", "train.progress=false", "encoder.d_model=16",
        "encoder.n_layers=1", "encoder.d_ff=32", "head.hidden=16"]
LIFETIME = ["lifetime.n_train=128", "lifetime.n_val=300", "lifetime.n_test=8", "lifetime.n_test_high=0",
            "lifetime.n_test_ood=0", "lifetime.compare_pixels=3"]
TIMING = {"gate_ps": 48.9, "period_ns": 12.5}


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _train(root, extra=()):
    sets = _sets([*TINY, *LIFETIME, *extra])
    assert main(["-q", "prepare", "-d", "spectra", "-o", str(root / "prep"), *sets]) == 0
    assert main(["-q", "train", "-d", "spectra", "-i", str(root / "prep"), "-o", str(root / "model"), *sets]) == 0
    return root / "model"


@pytest.fixture(scope="module")
def lifetime_model(tmp_path_factory):
    """The family preset (any acquisition setting in its family), tiny."""
    return _train(tmp_path_factory.mktemp("lifetime"))


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory):
    """The FLI-Net prior (bi-exponential, tau1 0.2-0.5, tau2 2-3 ns) at 256 x 97.7 ps, 40 MHz, tiny."""
    return _train(tmp_path_factory.mktemp("fixed"), ["lifetime.preset=fli-net", "lifetime.gate_ps=97.7",
                                                     "lifetime.period_ns=25"])


def _predict(model, src, dst, capsys, *extra):
    code = main(["-q", "predict", "-d", "spectra", "-i", str(src), "-o", str(dst), "--model", str(model), *extra])
    return code, capsys.readouterr().err


def _image(h=6, w=5, seed=0, photons=(300.0, 800.0)):
    """An image: every pixel shares one IRF (as on a microscope), lifetimes from the family prior."""
    s = FlimSetting(photons=photons)
    sim = simulate(s, h * w, seed=seed, irf=simulate(s, 1, seed=seed + 1)["irf"][0])
    return sim["counts"].reshape(h, w, -1).astype(np.uint16)


def _with_sidecar(path, timing=TIMING):
    Path(f"{path}.json").write_text(json.dumps(timing))
    return path


def test_image_stack_gives_map_status_and_side_files(lifetime_model, tmp_path, capsys):
    stack = _image()
    stack[0, 0] = 0
    src = _with_sidecar(tmp_path / "stack.npy")
    np.save(src, stack)
    code, err = _predict(lifetime_model, src, tmp_path / "map.npy", capsys, "--set", "lifetime.predict_bin=0",
                         "--set", "lifetime.compare_pixels=3")          # prediction settings: from --set
    assert code == 0, err
    cube = np.load(tmp_path / "map.npy")
    status = np.load(tmp_path / "map.status.npy")
    assert cube.shape == (6, 5, 4) and status.shape == (6, 5) and status[0, 0] == 1   # too_few_photons
    info = json.loads((tmp_path / "map.npy.meta.json").read_text())   # the run's details are in the output's meta
    assert sum(info["status"].values()) == 30 and info["timing"] == {**TIMING, "period_from": "stack.npy.json"}
    assert sorted(info["files"]) == ["", ".compare.csv", ".png", ".status.npy"]
    assert info["out_of_range_check"]["phasor_z_threshold"] > 0
    ok = status == 0
    assert ok.sum() >= 25 and np.isfinite(cube[ok]).all() and np.isnan(cube[~ok]).all()
    assert (tmp_path / "map.png").stat().st_size > 1000 and info["mle_comparison"]["pixels"] == 3
    import tifffile  # the same stack as a TIFF (timing from --set instead of a sidecar) gives the same map
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    code, err = _predict(lifetime_model, tmp_path / "stack.tif", tmp_path / "map2.npy", capsys,
                         "--set", "lifetime.predict_bin=0", "--set", "lifetime.stack_gate_ps=48.9",
                         "--set", "lifetime.stack_period_ns=12.5")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "map2.npy"), cube, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_a_stack_without_timing_needs_the_gate_width(lifetime_model, tmp_path, capsys):
    np.save(src := tmp_path / "bare.npy", _image())
    code, err = _predict(lifetime_model, src, tmp_path / "out.npy", capsys)
    assert code == 2 and "records no gate width" in err and "lifetime.stack_gate_ps" in err and "bare.npy.json" in err
    assert not list(tmp_path.glob("out*")) and "Traceback" not in err
    Path(f"{src}.json").write_text("[1, 2]")
    code, err = _predict(lifetime_model, src, tmp_path / "out.npy", capsys)
    assert code == 2 and "not a JSON object" in err
    _with_sidecar(src, {"gate_ps": 48.9})               # the period defaults to the window
    assert _predict(lifetime_model, src, tmp_path / "out.npy", capsys)[0] == 0
    assert json.loads((tmp_path / "out.npy.meta.json").read_text())["timing"]["period_ns"] == pytest.approx(12.5184)


@pytest.mark.parametrize("case, fragment", [
    ("gates", "10 time gates is far outside"),
    ("negative", "negative count -3 at pixel (row 1, column 2), gate 40"),
    ("nan", "NaN or infinite count at pixel (row 2, column 0), gate 7"),
    ("empty", "the file is empty"),
    ("csv_negative", "negative count -1 at data row 2, gate 5"),
    ("csv_empty", "the file is empty"),
    ("flat", "expected an H x W x T stack"),
])
def test_bad_lifetime_inputs_are_refused_clearly(lifetime_model, tmp_path, capsys, case, fragment):
    stack = _image().astype(np.float64)
    if case == "gates":
        np.save(src := tmp_path / "short.npy", stack[..., :10])
    elif case == "negative":
        stack[1, 2, 40] = -3
        np.save(src := tmp_path / "neg.npy", stack)
    elif case == "nan":
        stack[2, 0, 7] = np.nan
        np.save(src := tmp_path / "nan.npy", stack)
    elif case == "empty":
        (src := tmp_path / "empty.sdt").write_bytes(b"")
    elif case == "flat":
        np.save(src := tmp_path / "flat.npy", stack.ravel())
    else:
        src = tmp_path / "rows.csv"
        if case == "csv_empty":
            src.write_text("")
        else:
            rows = stack.reshape(-1, 256)[:3].astype(int)
            rows[1, 5] = -1
            pd.DataFrame(rows, columns=[f"t{i}" for i in range(256)]).to_csv(src, index=False)
    _with_sidecar(src)
    out = tmp_path / ("out.csv" if src.suffix == ".csv" else "out.npy")
    # a NaN pixel is a masked one: refused only under --on-invalid error (mark: test_masked_pixels_...)
    code, err = _predict(lifetime_model, src, out, capsys, *(["--on-invalid", "error"] if case == "nan" else []))
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_masked_pixels_and_blank_rows_get_a_status_and_the_rest_is_predicted(lifetime_model, tmp_path, capsys,
                                                                              caplog):
    stack = _image(photons=(2000.0, 3000.0)).astype(np.float64)
    np.save(clean := tmp_path / "clean.npy", stack)
    stack[2, 1, 30] = np.nan          # one masked pixel (NaN in one gate) and one all-NaN pixel
    stack[4, 3] = np.inf
    np.save(src := tmp_path / "masked.npy", stack)
    for path in (clean, src):
        _with_sidecar(path)
        code, err = _predict(lifetime_model, path, tmp_path / f"{path.stem}_map.npy", capsys,
                             "--set", "lifetime.predict_bin=1", "--set", "lifetime.compare_pixels=0")
        assert code == 0, err
    assert "2 pixel(s) have a NaN or infinite count" in caplog.text
    cube, status = np.load(tmp_path / "masked_map.npy"), np.load(tmp_path / "masked_map.status.npy")
    from domains.spectra.status import STATUS_CODES
    assert status[2, 1] == status[4, 3] == STATUS_CODES["missing_or_non_finite_count"] == 5
    assert np.isnan(cube[2, 1]).all() and np.isnan(cube[4, 3]).all()
    clean_cube = np.load(tmp_path / "clean_map.npy")
    # pixels whose 3 x 3 bin misses no masked pixel are predicted as without the mask; the IRF (estimated from
    # the usable pixels' sum) moves little, so the rest stay close
    far = np.ones((6, 5), bool)
    far[1:4, 0:3] = far[3:6, 2:5] = False
    np.testing.assert_allclose(cube[far], clean_cube[far], rtol=0.05, atol=0.05)
    masked = json.loads((tmp_path / "masked_map.npy.meta.json").read_text())["status"]
    assert masked["missing_or_non_finite_count"] == 2 and sum(masked.values()) == 30
    rows = tmp_path / "rows.csv"        # a table: a blank cell or a text count marks that row
    table = pd.DataFrame(np.load(clean).reshape(-1, 256)[:4].astype(int), columns=[f"t{i}" for i in range(256)])
    table = table.astype(object)
    table.iloc[1, 10], table.iloc[3, 0] = "", "n/a"
    table.to_csv(rows, index=False)
    _with_sidecar(rows)
    code, err = _predict(lifetime_model, rows, tmp_path / "rows_out.csv", capsys)
    assert code == 0, err
    got = pd.read_csv(tmp_path / "rows_out.csv")
    assert list(got.status == "missing_or_non_finite_count") == [False, True, False, True]
    assert got.loc[[1, 3], ["tau_m", "photons"]].isna().all().all() and got.loc[[0, 2], "photons"].gt(0).all()
    code, err = _predict(lifetime_model, rows, tmp_path / "rows_err.csv", capsys, "--on-invalid", "error")
    assert code == 2 and "NaN or infinite count at data row 2, gate 10" in err and "--on-invalid mark" in err
    np.save(src, np.full((2, 2, 256), np.nan))
    code, err = _predict(lifetime_model, src, tmp_path / "none.npy", capsys)
    assert code == 2 and "every pixel has a NaN or infinite count" in err


def test_fixed_setting_models_check_gate_width_and_output_kind(fixed_model, lifetime_model, tmp_path, capsys):
    src = _with_sidecar(tmp_path / "ok.npy")            # 48.9 ps: not the fixed model's 97.7 ps
    np.save(src, _image())
    code, err = _predict(fixed_model, src, tmp_path / "map.npy", capsys)
    assert code == 2 and "gate width 48.9 ps but the model was trained on 97.7 ps" in err
    code, err = _predict(lifetime_model, src, tmp_path / "map.csv", capsys)
    assert code == 2 and "use -o something.npy" in err and not (tmp_path / "map.csv").exists()


def test_csv_histograms_with_and_without_irf(lifetime_model, tmp_path, capsys):
    sim = simulate(FlimSetting(), 4, seed=9)
    table = pd.DataFrame(sim["counts"], columns=[f"t{i}" for i in range(256)])
    table.insert(0, "pixel_id", ["a", "b", "c", "d"])
    table.to_csv(src := _with_sidecar(tmp_path / "h.csv"), index=False)
    assert _predict(lifetime_model, src, tmp_path / "p.csv", capsys)[0] == 0
    with_irf = pd.concat([table, pd.DataFrame(sim["irf"], columns=[f"irf{i}" for i in range(256)])], axis=1)
    with_irf.to_csv(src2 := _with_sidecar(tmp_path / "h2.csv"), index=False)
    assert _predict(lifetime_model, src2, tmp_path / "p2.csv", capsys)[0] == 0
    for name in ("p.csv", "p2.csv"):
        out = pd.read_csv(tmp_path / name)
        assert list(out.pixel_id) == ["a", "b", "c", "d"] and set(out.status) <= {"ok", "outside_training_prior",
                                                                                   "lifetime_out_of_range"}
        ok = out[out.status == "ok"]
        assert ((ok.tau1 >= 0.1) & (ok.tau1 <= ok.tau2) & (ok.tau2 <= 10)).all()


def _issue_image(tmp_path, photons=2000.0, seed=0):
    """256 x 256 pixels, 256 gates of 97.7 ps, 40 MHz, one Gaussian IRF of 0.2 ns FWHM; column bands of pure
    0.8 ns, pure 2 ns, a 60/40 (amplitude) mix of the two, and pure 20 ns (outside 0.1-10 ns)."""
    from domains.spectra.flim import _irf_gates, expected_rates
    gate, period = 0.0977, 25.0
    rng = np.random.default_rng(seed)
    irf = _irf_gates(np.array(["gaussian"]), np.array([1.5]), np.array([0.2]), rng, np.arange(257) * gate)
    bands = [(0.8, 0.8, 1.0), (2.0, 2.0, 1.0), (0.8, 2.0, 0.6), (20.0, 20.0, 1.0)]
    rates = np.concatenate([expected_rates(irf, t1, t2, a, gate, period) for t1, t2, a in bands])
    stack = rng.poisson(photons * np.repeat(rates, 64, axis=0)[None].repeat(256, 0)).astype(np.uint16)
    np.save(src := tmp_path / "issue.npy", stack)
    return _with_sidecar(src, {"gate_ps": 97.7, "period_ns": 25.0})


def _band_status(tmp_path, out):
    codes = np.load(tmp_path / f"{out}.status.npy")
    inner = lambda b: codes[2:-2, 64 * b + 2:64 * b + 62]   # noqa: E731  (3x3 binning mixes band borders)
    return [inner(b) for b in range(4)]


def test_out_of_range_decays_get_a_status_instead_of_a_clipped_number(lifetime_model, fixed_model, tmp_path, capsys):
    from domains.spectra.status import STATUS_CODES as C
    src = _issue_image(tmp_path)
    code, err = _predict(lifetime_model, src, tmp_path / "fam.npy", capsys, "--set", "lifetime.compare_pixels=0")
    assert code == 0, err
    pure08, pure2, mix, pure20 = _band_status(tmp_path, "fam")
    for band in (pure08, pure2, mix):                   # all inside the family's 0.1-10 ns, mono or bi
        assert (band == C["ok"]).mean() > 0.95
    assert (pure20 == C["lifetime_out_of_range"]).mean() > 0.9
    assert np.isnan(np.load(tmp_path / "fam.npy")[2:-2, 194:254]).mean() > 0.9   # no clipped number there
    code, err = _predict(fixed_model, src, tmp_path / "fix.npy", capsys, "--set", "lifetime.compare_pixels=0")
    assert code == 0, err
    pure08, pure2, mix, pure20 = _band_status(tmp_path, "fix")
    assert (pure08 != C["ok"]).mean() > 0.9             # 0.8 ns: between the trained ranges, mono-exponential
    assert np.isin(pure08, [C["mono_exponential"], C["lifetime_out_of_range"]]).mean() > 0.9
    assert (pure2 == C["ok"]).mean() > 0.9              # tau2 = 2 ns with A = 0 is inside the FLI-Net prior
    assert (mix != C["ok"]).mean() > 0.5 and (pure20 == C["lifetime_out_of_range"]).mean() > 0.9


def test_a_rerun_removes_the_siblings_of_the_previous_output(lifetime_model, tmp_path, capsys):
    np.save(src := _with_sidecar(tmp_path / "stack.npy"), _image())
    assert _predict(lifetime_model, src, tmp_path / "map.npy", capsys, "--set", "lifetime.compare_pixels=3")[0] == 0
    assert (tmp_path / "map.compare.csv").exists()
    assert _predict(lifetime_model, src, tmp_path / "map.npy", capsys, "--set", "lifetime.compare_pixels=0")[0] == 0
    assert not (tmp_path / "map.compare.csv").exists() and (tmp_path / "map.status.npy").exists()
    assert not [p.name for p in tmp_path.iterdir() if ".partial-" in p.name]


def _tiled_stack(path, side):
    """A memory-mapped side x side x 256 uint16 stack tiled with one simulated 16 x 16 block."""
    stack = np.lib.format.open_memmap(path, "w+", np.uint16, (side, side, 256))
    block = _image(h=16, w=16)
    for r in range(0, side, 16):
        for c in range(0, side, 16):
            stack[r:r + 16, c:c + 16] = block
    stack.flush()
    del stack
    return _with_sidecar(path)


def test_image_memory_does_not_grow_with_the_stack(lifetime_model, tmp_path):
    """Images stream in tiles of rows: the traced peak (numpy's allocations) for a 256 x 256 x 256 memory-mapped
    stack stays within a few MiB of a 64 x 64 one's, where the whole stack as float64 alone is 128 MiB. What
    still grows with H x W is 4-byte planes for the preview (1 MiB here)."""
    import tracemalloc

    from core.domain import get_domain
    from core.predict import predict_file
    peaks = {}
    for side in (64, 256):
        src = _tiled_stack(tmp_path / f"s{side}.npy", side)
        dom = get_domain("spectra")
        dom.config(None, ["lifetime.compare_pixels=20"])
        tracemalloc.start()
        try:
            predict_file(dom, lifetime_model, src, tmp_path / f"map{side}.npy", chunk_size=2048, progress=False)
            peaks[side] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert np.load(tmp_path / f"map{side}.npy", mmap_mode="r").shape == (side, side, 4)
    assert peaks[256] < peaks[64] + 16 * 2 ** 20, {k: f"{v / 2 ** 20:.1f} MiB" for k, v in peaks.items()}


def test_sigterm_during_an_image_prediction_keeps_the_earlier_output_set(lifetime_model, tmp_path, capsys):
    """Issue 11 #2: an interrupted prediction leaves no staging files and no new sibling beside an older map."""
    import os
    import signal
    import subprocess
    import sys
    import time
    np.save(small := _with_sidecar(tmp_path / "small.npy"), _image())
    out = tmp_path / "out" / "map.npy"
    assert _predict(lifetime_model, small, out, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    big = _tiled_stack(tmp_path / "big.npy", 256)
    cmd = [sys.executable, "-m", "core.cli", "-q", "predict", "-d", "spectra", "-i", str(big), "-o", str(out),
           "--model", str(lifetime_model), "--chunk-size", "512"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(".partial-" in p.name for p in out.parent.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the prediction finished before it could be interrupted"
    time.sleep(1.0)   # inside the tiles
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


def test_prediction_settings_are_the_models_unless_the_command_gives_them():
    """A model trained with `--set lifetime.min_photons=80` keeps 80 at predict time (the domain default used
    to win silently); a predict command's own --set overrides it for that run."""
    from core.domain import get_domain
    from domains.spectra.predict import options
    stored = {"min_photons": 80, "predict_bin": 1, "compare_pixels": 0}
    spectra = get_domain("spectra")
    assert options(stored, spectra.config(None, [])) == stored
    assert options(stored, spectra.config(None, ["lifetime.min_photons=20"]))["min_photons"] == 20
    assert options(stored, None) == stored


def test_time_first_stacks_and_timing_outside_the_family(lifetime_model, tmp_path, capsys):
    """A T x H x W stack read as H x W x T has a window far from the laser period: refused with the way out
    (lifetime.stack_axes=THW), which gives the same map as the H x W x T file; a laser period the family never
    saw is refused too (the model would answer confidently and wrongly)."""
    stack = _image(h=40, w=40)                                           # H x W x 256 gates
    hwt = _with_sidecar(tmp_path / "hwt.npy")
    np.save(hwt, stack)
    thw = _with_sidecar(tmp_path / "thw.npy")
    np.save(thw, np.ascontiguousarray(np.moveaxis(stack, -1, 0)))       # as a gated camera writes it
    sets = ("--set", "lifetime.predict_bin=0", "--set", "lifetime.compare_pixels=0")
    code, err = _predict(lifetime_model, thw, tmp_path / "bad.npy", capsys, *sets)
    assert code == 2 and "0.16 of the 12.5 ns laser period" in err and "lifetime.stack_axes=THW" in err
    code, err = _predict(lifetime_model, thw, tmp_path / "thw_map.npy", capsys, *sets,
                         "--set", "lifetime.stack_axes=THW")
    assert code == 0, err
    assert _predict(lifetime_model, hwt, tmp_path / "hwt_map.npy", capsys, *sets)[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "thw_map.npy"), np.load(tmp_path / "hwt_map.npy"), atol=1e-6)

    gate_only = _with_sidecar(tmp_path / "gate_only.npy", {"gate_ps": 48.9})   # the usual case: no period known
    np.save(gate_only, np.load(thw))
    code, err = _predict(lifetime_model, gate_only, tmp_path / "bad2.npy", capsys, *sets)
    assert code == 2 and "laser period 1.956 ns" in err and "lifetime.stack_axes=THW" in err
    few = _with_sidecar(tmp_path / "few.npy")                                   # 20 x 20: 20 gates, far too few
    np.save(few, np.ascontiguousarray(np.moveaxis(stack[:20, :20], -1, 0)))
    code, err = _predict(lifetime_model, few, tmp_path / "bad3.npy", capsys, *sets)
    assert code == 2 and "20 time gates is far outside" in err and "lifetime.stack_axes=THW" in err

    far = _with_sidecar(tmp_path / "far.npy", {"gate_ps": 48.9, "period_ns": 100.0})
    np.save(far, stack[:4, :4])
    code, err = _predict(lifetime_model, far, tmp_path / "far_map.npy", capsys)
    assert code == 2 and "laser period 100 ns (far.npy.json) is outside the 12.5-50 ns" in err


def test_a_given_gate_width_never_silently_loses_to_the_files(tmp_path, caplog):
    from domains.spectra.readers import resolve_timing
    timing = resolve_timing(tmp_path / "x.ptu", 256, {"gate_ps": 48.9, "period_ns": 12.5}, 97.7, None)
    assert timing["gate_ps"] == 48.9 and "stack_gate_ps=97.7 is for stacks without timing" in caplog.text


def test_histogram_table_saved_with_semicolons_gets_the_hint(tmp_path):
    from core.errors import UserError
    from domains.spectra.readers import read_table
    (path := tmp_path / "h.csv").write_text("t0;t1;t2\n1;2;3\n")
    with pytest.raises(UserError, match="found 0 t-columns.*looks ';'-separated"):
        read_table(path)
