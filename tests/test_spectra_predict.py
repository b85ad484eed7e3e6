"""Spectra prediction through the CLI with tiny trained models: image stacks -> lifetime maps with status,
NIR CSVs -> properties, and bad inputs refused with a clear error, no traceback and nothing written."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from domains.spectra import SpectraDomain
from domains.spectra.flim import FlimSetting, simulate

pytestmark = pytest.mark.slow
TINY = ["train.max_steps=3", "train.epochs=1", "train.batch_size=64", "train.progress=false", "encoder.d_model=16",
        "encoder.n_layers=1", "encoder.d_ff=32", "head.hidden=16"]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def lifetime_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifetime")
    sets = _sets([*TINY, "lifetime.n_train=128", "lifetime.n_val=16", "lifetime.n_test=8", "lifetime.n_test_high=0",
                  "lifetime.n_test_ood=0", "lifetime.compare_pixels=3"])
    assert main(["-q", "prepare", "-d", "spectra", "-o", str(root / "prep"), *sets]) == 0
    assert main(["-q", "train", "-d", "spectra", "-i", str(root / "prep"), "-o", str(root / "model"), *sets]) == 0
    return root / "model"


@pytest.fixture(scope="module")
def nir_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("nir")
    sets = _sets([*TINY, "task=nir", "nir.train.max_steps=3", "nir.pls_max_components=3"])
    assert main(["-q", "prepare", "-d", "spectra", "-o", str(root / "prep"), *sets]) == 0
    assert main(["-q", "train", "-d", "spectra", "-i", str(root / "prep"), "-o", str(root / "model"), *sets]) == 0
    assert main(["-q", "evaluate", "-d", "spectra", "-i", str(root / "prep"), "--model", str(root / "model"),
                 "-o", str(root / "m.json"), *sets]) == 0
    return root


def _predict(model, src, dst, capsys, *extra):
    code = main(["-q", "predict", "-d", "spectra", "-i", str(src), "-o", str(dst), "--model", str(model), *extra])
    return code, capsys.readouterr().err


def _image(h=6, w=5, seed=0, photons=(300.0, 800.0)):
    sim = simulate(FlimSetting(photons=photons), h * w, seed=seed)
    return sim["counts"].reshape(h, w, -1).astype(np.uint16)


def test_image_stack_gives_map_status_and_side_files(lifetime_model, tmp_path, capsys):
    stack = _image()
    stack[0, 0] = 0                                   # an empty pixel (binning is on: neighbours fill it a bit)
    src = tmp_path / "stack.npy"
    np.save(src, stack)
    code, err = _predict(lifetime_model, src, tmp_path / "map.npy", capsys, "--set", "lifetime.predict_bin=0")
    assert code == 0, err
    cube = np.load(tmp_path / "map.npy")
    status = np.load(tmp_path / "map.status.npy")
    assert cube.shape == (6, 5, 4) and status.shape == (6, 5)
    meta = json.loads((tmp_path / "map.npy.meta.json").read_text())
    assert meta["status"]["ok"] + meta["status"].get("too_few_photons", 0) == 30
    ok = status == 0
    assert np.isfinite(cube[ok]).all() and np.isnan(cube[~ok]).all()
    assert (tmp_path / "map.png").stat().st_size > 1000 and meta["mle_comparison"]["pixels"] == 3
    # the same stack as a TIFF gives the same map
    import tifffile
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert _predict(lifetime_model, tmp_path / "stack.tif", tmp_path / "map2.npy", capsys)[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "map2.npy"), cube, equal_nan=True)


@pytest.mark.parametrize("case, fragment", [
    ("gates", "histograms have 100 time gates but the model was trained on 256"),
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
        src = tmp_path / "short.npy"
        np.save(src, stack[..., :100])
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
    out = tmp_path / ("out.csv" if src.suffix == ".csv" else "out.npy")
    code, err = _predict(lifetime_model, src, out, capsys)
    assert code == 2 and fragment in err and "Traceback" not in err, err
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_gate_width_mismatch_and_output_kind_are_checked(lifetime_model, tmp_path, capsys):
    src = tmp_path / "ok.npy"
    np.save(src, _image())
    code, err = _predict(lifetime_model, src, tmp_path / "map.csv", capsys)
    assert code == 2 and "use -o something.npy" in err and not (tmp_path / "map.csv").exists()
    from domains.spectra import readers
    with pytest.raises(Exception, match="gate width 96.97 ps but the model was trained on 48.9 ps"):
        readers.check_gates(src, 256, 96.97, 256, 48.9)


def test_csv_histograms_with_and_without_irf(lifetime_model, tmp_path, capsys):
    sim = simulate(FlimSetting(), 4, seed=9)
    table = pd.DataFrame(sim["counts"], columns=[f"t{i}" for i in range(256)])
    table.insert(0, "pixel_id", ["a", "b", "c", "d"])
    table.to_csv(src := tmp_path / "h.csv", index=False)
    assert _predict(lifetime_model, src, tmp_path / "p.csv", capsys)[0] == 0
    with_irf = pd.concat([table, pd.DataFrame(sim["irf"], columns=[f"irf{i}" for i in range(256)])], axis=1)
    with_irf.to_csv(src2 := tmp_path / "h2.csv", index=False)
    assert _predict(lifetime_model, src2, tmp_path / "p2.csv", capsys)[0] == 0
    for name in ("p.csv", "p2.csv"):
        out = pd.read_csv(tmp_path / name)
        assert list(out.pixel_id) == ["a", "b", "c", "d"] and (out.status == "ok").all()
        assert ((out.tau1 >= 0.2) & (out.tau1 <= 0.5) & (out.tau2 >= 2) & (out.tau2 <= 3)).all()


def test_nir_predicts_new_spectra_and_refuses_a_wrong_grid(nir_model, tmp_path, capsys):
    model, new = nir_model / "model", nir_model / "prep" / "new_spectra.csv"
    assert _predict(model, new, tmp_path / "p.csv", capsys)[0] == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert {"y", "y_unc", "status"} <= set(out.columns) and len(out) == 30 and out.y.notna().all()
    metrics = json.loads((nir_model / "m.json").read_text())["rows"]
    assert {r["method"] for r in metrics} == {"sciformer-sdpa", "pls"}
    scale = [r["value"] for r in metrics if r["metric"] == "correction_scale"]
    assert len(scale) == 1 and 0 <= scale[0] <= 1
    spectra = pd.read_csv(new)
    spectra.iloc[:, ::2].to_csv(bad := tmp_path / "coarse.csv", index=False)   # every other wavelength
    code, err = _predict(model, bad, tmp_path / "bad.csv", capsys)
    assert code == 2 and "wrong wavelength grid: 350 wavelength columns" in err and "Traceback" not in err
    assert not (tmp_path / "bad.csv").exists()
    (empty := tmp_path / "empty.csv").write_text("")
    code, err = _predict(model, empty, tmp_path / "bad2.csv", capsys)
    assert code == 2 and "empty" in err


def test_nir_preprocessing_and_domain_config_checks():
    from domains.spectra.nir import preprocess
    x = np.random.default_rng(0).normal(size=(4, 50)).cumsum(1)
    snv = preprocess(x, ["snv"], 15, 2)
    np.testing.assert_allclose(snv.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(snv.std(1), 1)
    line = np.tile(np.arange(50.0) * 3 + 1, (2, 1))
    np.testing.assert_allclose(preprocess(line, ["sg1"], 7, 2), 3.0)   # derivative of a line is its slope
    dom = SpectraDomain()
    with pytest.raises(Exception, match="nir.sg_window: must be odd"):
        dom.config(None, ["nir.sg_window=10"])
    with pytest.raises(Exception, match="lifetime.photons"):
        dom.config(None, ["lifetime.photons=[1000, 100]"])


def test_nir_model_is_pls_plus_a_correction_that_starts_at_zero(nir_model):
    """The stored PLS coefficients reproduce the PLS baseline exactly; an untrained correction adds nothing."""
    import torch
    from core.domain import LoadedModel
    from core.runs import load_members
    from domains.spectra import nir
    from domains.spectra.model import nir_model as build
    members = load_members(SpectraDomain(), nir_model / "model", torch.device("cpu"))
    meta = members[0].metadata["task"]
    data = nir.load_prepared(nir_model / "prep")
    cfg = SpectraDomain().config(None, ["task=nir", "nir.pls_max_components=3"])
    pls, steps = nir.fit_pls_baseline(data["x_cal"], data["y_cal"], 3, 0, cfg["nir.sg_window"], cfg["nir.sg_poly"])
    want = pls.predict(nir.preprocess(data["x_test"], steps, cfg["nir.sg_window"], cfg["nir.sg_poly"])).ravel()
    np.testing.assert_allclose(nir.predict_spectra(members, data["x_test"], 0.0)[0], want, rtol=1e-6, atol=1e-6)
    fresh = [LoadedModel(build(meta).eval(), {"task": meta}, nir_model, torch.device("cpu"))]
    np.testing.assert_allclose(nir.predict_spectra(fresh, data["x_test"])[0], want, rtol=1e-6, atol=1e-6)
