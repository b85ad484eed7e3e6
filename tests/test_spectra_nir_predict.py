"""NIR prediction through the CLI with a tiny trained model: new spectra -> a property with status, the
wavelength grid checked against the model's (any column order, other units named), bad inputs refused with a
clear error naming the sample. Split from test_spectra_predict.py (the lifetime task's), whose helpers it uses."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_spectra_predict import TINY, _predict, _sets

from core.cli import main
from domains.spectra import SpectraDomain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nir_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("nir")
    sets = _sets([*TINY, "task=nir", "nir.train.max_steps=3", "nir.pls_max_components=3"])
    assert main(["-q", "prepare", "-d", "spectra", "-o", str(root / "prep"), *sets]) == 0
    assert main(["-q", "train", "-d", "spectra", "-i", str(root / "prep"), "-o", str(root / "model"), *sets]) == 0
    assert main(["-q", "evaluate", "-d", "spectra", "-i", str(root / "prep"), "--model", str(root / "model"),
                 "-o", str(root / "m.json"), *sets]) == 0
    return root


def test_nir_predicts_new_spectra_and_refuses_a_wrong_grid(nir_model, tmp_path, capsys):
    model, new = nir_model / "model", nir_model / "prep" / "new_spectra.csv"
    assert _predict(model, new, tmp_path / "p.csv", capsys)[0] == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert {"y", "y_unc", "status"} <= set(out.columns) and len(out) == 30
    assert out.y[out.status == "ok"].notna().all() and out.y[out.status != "ok"].isna().all()
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
    # wavelengths in descending order (as many instruments export) are the same spectra
    spectra[spectra.columns[::-1]].to_csv(desc := tmp_path / "descending.csv", index=False)
    assert _predict(model, desc, tmp_path / "desc.csv", capsys)[0] == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "desc.csv").y, out.y, atol=1e-9)
    spectra.to_csv(semi := tmp_path / "semicolon.csv", index=False, sep=";")
    code, err = _predict(model, semi, tmp_path / "bad3.csv", capsys)
    assert code == 2 and "looks ';'-separated" in err


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
    members = load_members(SpectraDomain().task("nir"), nir_model / "model", torch.device("cpu"))
    meta = members[0].metadata["task"]
    data = nir.load_prepared(nir_model / "prep")
    cfg = SpectraDomain().config(None, ["task=nir", "nir.pls_max_components=3"])
    pls, steps = nir.fit_pls_baseline(data["x_cal"], data["y_cal"], 3, 0, cfg["nir.sg_window"], cfg["nir.sg_poly"])
    want = pls.predict(nir.preprocess(data["x_test"], steps, cfg["nir.sg_window"], cfg["nir.sg_poly"])).ravel()
    np.testing.assert_allclose(nir.predict_spectra(members, data["x_test"], 0.0)[0], want, rtol=1e-6, atol=1e-6)
    fresh = [LoadedModel(build(meta).eval(), {"task": meta}, nir_model, torch.device("cpu"))]
    np.testing.assert_allclose(nir.predict_spectra(fresh, data["x_test"])[0], want, rtol=1e-6, atol=1e-6)


def test_nir_uncertainty_is_calibrated_on_validation(nir_model):
    """y_unc is the validation RMSE combined with the members' spread of the correction share that is used: with
    share 0 (the prediction is PLS) it is exactly the validation RMSE, never the unused correction's spread."""
    import json

    import torch

    from core.runs import load_members
    from domains.spectra import nir
    members = load_members(SpectraDomain().task("nir"), nir_model / "model", torch.device("cpu"))
    val_rmse = json.loads((nir_model / "model" / "calibration.json").read_text())["val_rmse"]
    x = nir.load_prepared(nir_model / "prep")["x_test"]
    _, unc = nir.predict_spectra(members, x, 0.0)
    np.testing.assert_allclose(unc, val_rmse, rtol=1e-6, atol=0)      # float32 outputs
    _, unc = nir.predict_spectra(members, x)
    assert val_rmse > 0 and (unc >= val_rmse * (1 - 1e-6)).all() and np.isfinite(unc).all()


def test_nir_spectra_outside_the_calibration_range_get_a_status(nir_model, tmp_path, capsys):
    """Issue 11 #6: spectra the model cannot judge (here reversed in wavelength, or scaled by 100 when the PLS
    baseline's preprocessing does not remove a scale) get `outside_calibration_range` and no number."""
    from core.runs import first_meta
    model, new = nir_model / "model", nir_model / "prep" / "new_spectra.csv"
    spectra = pd.read_csv(new)
    base = first_meta(model)["task"]["base"]
    reversed_ = pd.DataFrame(spectra.to_numpy()[:, ::-1], columns=spectra.columns)
    reversed_.to_csv(src := tmp_path / "reversed.csv", index=False)
    assert _predict(model, src, tmp_path / "r.csv", capsys)[0] == 0
    out = pd.read_csv(tmp_path / "r.csv")
    assert (out.status == "outside_calibration_range").all() and out.y.isna().all()
    assert out.message.str.contains(r"(?:T\^2|Q) \S+ over its limit", regex=True).all()
    (spectra * 100).to_csv(src := tmp_path / "scaled.csv", index=False)
    assert _predict(model, src, tmp_path / "s.csv", capsys)[0] == 0
    assert _predict(model, new, tmp_path / "p.csv", capsys)[0] == 0
    scaled, plain = pd.read_csv(tmp_path / "s.csv"), pd.read_csv(tmp_path / "p.csv")
    if "snv" in base["preprocess"]:   # SNV removes the scale: the same spectra to the model, the same answer
        np.testing.assert_allclose(scaled.y, plain.y, rtol=1e-4, atol=1e-4)
    else:
        assert (scaled.status == "outside_calibration_range").all() and scaled.y.isna().all()


def test_nir_rows_with_bad_cells_name_the_wavelength_column(nir_model, tmp_path, capsys):
    model, new = nir_model / "model", nir_model / "prep" / "new_spectra.csv"
    spectra = pd.read_csv(new, dtype=str).iloc[:4]
    waves = [c for c in spectra.columns if c.replace(".", "").isdigit()]
    spectra.loc[1, waves[10]] = "high"
    spectra.loc[2, waves[3]], spectra.loc[2, waves[7]] = "", ""
    spectra.loc[3, waves[0]] = "inf"
    spectra.to_csv(src := tmp_path / "cells.csv", index=False)
    assert _predict(model, src, tmp_path / "c.csv", capsys)[0] == 0
    out = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert list(out.status[1:]) == ["missing_or_non_numeric_value"] * 2 + ["non_finite_value"]
    assert list(out.message[1:]) == [f"column {waves[10]} holds 'high', not a number",
                                     f"column {waves[3]} is blank (1 more such cells in this row)",
                                     f"column {waves[0]} holds inf"]
    code, err = _predict(model, src, tmp_path / "e.csv", capsys, "--on-invalid", "error")
    assert code == 2 and "row 2" in err and f"column {waves[10]} holds 'high'" in err, err


def test_validate_names_the_models_task(nir_model, capsys):
    """The config's default task is lifetime; a nir model is validated (and predicted) as nir."""
    assert main(["validate", "-d", "spectra", "--model", str(nir_model / "model")]) == 0
    assert "config OK for spectra/nir" in capsys.readouterr().out


def test_nir_errors_name_the_sample(nir_model, tmp_path, capsys):
    spectra = pd.read_csv(nir_model / "prep" / "new_spectra.csv")
    spectra.insert(0, "sample", [f"lot-{i}" for i in range(len(spectra))])
    spectra.iloc[2, 5] = np.nan
    spectra.to_csv(src := tmp_path / "gap.csv", index=False)
    code, err = _predict(nir_model / "model", src, tmp_path / "p.csv", capsys, "--on-invalid", "error")
    import re
    found = re.search(r"row (\d+) \(sample='lot-(\d+)'\): ", err)   # the first unpredicted row, by its id
    assert code == 2 and found and int(found[1]) == int(found[2]) + 1 and int(found[1]) <= 3, err


def test_nir_grid_columns_follow_the_models_order():
    """A model trained on a descending export (wavenumbers) and files in either order: the columns come back in
    the model's order; a wavelength given twice is refused."""
    from core.errors import UserError
    from domains.spectra.nir_task import grid_columns
    desc = [f"{w:g}" for w in np.arange(10000, 3990, -10.0)]
    meta = {"wavelengths": [float(w) for w in desc]}
    assert grid_columns(["id", *desc], meta) == desc
    assert grid_columns(desc[::-1], meta) == desc
    assert grid_columns(desc[::-1], {"wavelengths": meta["wavelengths"][::-1]}) == desc[::-1]
    with pytest.raises(UserError, match="wavelength 4000 has more than one column"):
        grid_columns([*desc[:-1], "4000.0"] + ["4000"], {"wavelengths": [*meta["wavelengths"], 4000.0]})


def test_nir_grid_error_recognises_other_units():
    from core.errors import UserError
    from domains.spectra.nir_task import grid_columns
    meta = {"wavelengths": [float(w) for w in range(1100, 2500, 2)]}
    with pytest.raises(UserError, match="look like micrometres"):
        grid_columns([f"{w / 1000:g}" for w in range(1100, 2500, 2)], meta)
    with pytest.raises(UserError, match="look like wavenumbers"):
        grid_columns([f"{w:g}" for w in np.linspace(1e7 / 2498, 1e7 / 1100, 500)], meta)
    with pytest.raises(UserError, match="wrong wavelength grid") as err:
        grid_columns(["1", "2", "3"], meta)
    assert "look like" not in str(err.value)


def test_own_nir_table_with_a_wrong_or_text_target_is_refused_clearly(tmp_path):
    from core.domain import get_domain
    from core.errors import UserError
    from domains.spectra import nir as N
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(12, 10)), columns=[f"{1100 + 10 * i}" for i in range(10)])
    table.insert(0, "sample_id", [f"S{i}" for i in range(12)])
    table["protein"] = rng.normal(size=12)
    table.to_csv(path := tmp_path / "nir.csv", index=False)
    dom = get_domain("spectra")

    def load(target):
        return N.load_dataset(dom.config(None, ["task=nir", "nir.dataset=csv", f"nir.path={path}",
                                                f"nir.target={target}"]))
    with pytest.raises(UserError, match="did you mean 'protein'"):
        load("Protein")
    with pytest.raises(UserError, match=r"non-wavelength columns are \['sample_id', 'protein'\]"):
        load("fat")
    with pytest.raises(UserError, match=r"'sample_id' holds text \('S0', 'S1', 'S2'\), not numbers"):
        load("sample_id")
    table = table.astype({"1130": object})
    table.loc[4, "1130"] = "oops"
    table.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"data row 5, column '1130': 'oops' is missing, not a number"):
        load("protein")
