"""Config loading and validation: every problem at once, with its key path; frozen; written with outputs."""
import dataclasses
import json

import pytest

from core.config import parse_overrides
from core.domain import get_domain
from core.errors import ConfigError, UserError


@pytest.fixture
def molecules():
    return get_domain("molecules")


def test_defaults_validate_and_are_frozen(molecules):
    cfg = molecules.config()
    assert cfg["train.batch_size"] == 32 and cfg["encoder.attention"] == "linear_fused"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.domain = "x"
    with pytest.raises(TypeError):
        cfg.values["train"]["lr"] = 1.0  # nested mappings are read-only too


def test_every_problem_is_reported_with_its_path(molecules):
    with pytest.raises(ConfigError) as info:
        molecules.config(overrides=["train.lr=-1", "encoder.atention=x", "data.split=stratified",
                                    "train.batch_size=big"])
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = "\n".join(problems)
    assert "train.lr" in text and "train.batch_size" in text and "data.split" in text
    assert "encoder.atention: unknown key; did you mean 'attention'?" in text


def test_unknown_attention_backend_lists_the_known_ones(molecules):
    with pytest.raises(ConfigError, match="encoder.attention: unknown backend 'flash9'.*sdpa"):
        molecules.config(overrides=["encoder.attention=flash9"])


def test_cross_field_rules(molecules):
    with pytest.raises(ConfigError) as info:
        molecules.config(overrides=["data.dataset=csv", "data.sizes=[0.5,0.4,0.2]"])
    text = "\n".join(info.value.problems)
    assert "data.path: required" in text and "data.targets" in text and "must sum to 1" in text


def test_user_file_then_set_override_order(molecules, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.01\n  epochs: 5\n")
    cfg = molecules.config(f, ["train.lr=0.002"])
    assert cfg["train.lr"] == 0.002 and cfg["train.epochs"] == 5
    assert cfg.sources[-1] == "--set train.lr=0.002"
    resolved = cfg.resolved({"x.csv": "abc"})
    assert resolved["data_hashes"] == {"x.csv": "abc"} and "torch" in resolved["versions"]
    json.dumps(resolved)  # serializable as written beside outputs


def test_task_defaults_sit_under_what_the_user_gives(tmp_path):
    """timeseries' classify task uses a classify dataset where the domain default is a forecasting one
    (a workflow run `classify` with no settings failed validation); anything the user gives wins."""
    ts = get_domain("timeseries")
    assert ts.config(None, ["task=classify"])["data.dataset"] == "japanesevowels"
    assert ts.config(None, [])["data.dataset"] == "vic_elec"
    assert ts.config(None, ["task=classify", "data.dataset=basicmotions"])["data.dataset"] == "basicmotions"
    f = tmp_path / "c.yaml"
    f.write_text("task: classify\n")
    cfg = ts.config(f, [])
    assert cfg["data.dataset"] == "japanesevowels"
    assert "task classify defaults: data.dataset=japanesevowels" in cfg.sources
    assert "data" not in cfg.given          # not the user's: a prepared folder's check would not cite it
    with pytest.raises(ConfigError, match="vic_elec' is not a classify dataset"):
        ts.config(f, ["data.dataset=vic_elec"])


def test_bad_yaml_and_missing_file_name_the_file(molecules, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        molecules.config(bad)
    with pytest.raises(UserError, match="config file not found"):
        molecules.config(tmp_path / "nope.yaml")


def test_parse_overrides():
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=x"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert parse_overrides(["lr=1e-3", "xs=[1e-3, a]"]) == {"lr": 0.001, "xs": [0.001, "a"]}  # YAML 1.1 quirk
    assert parse_overrides(["col=nan", "name=inf"]) == {"col": "nan", "name": "inf"}  # names stay names
    with pytest.raises(ConfigError, match="train was already set to a value"):
        parse_overrides(["train=5", "train.lr=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["novalue"])


def test_given_keeps_only_what_the_user_said_and_survives_pickling(molecules, tmp_path):
    """`given_at` is what a predict command lays over settings stored with a model: the user's --config and
    --set, never the defaults; worker processes receive the config pickled."""
    import pickle
    user = tmp_path / "user.yaml"
    user.write_text("train:\n  lr: 0.01\n")
    cfg = molecules.config(str(user), ["train.epochs=2"])
    assert cfg.given_at("train") == {"lr": 0.01, "epochs": 2}
    assert cfg.given_at("encoder") == {} and cfg.given_at("train.lr") == {}
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and back.given_at("train") == {"lr": 0.01, "epochs": 2}
    with pytest.raises(TypeError):
        back.given["train"]["lr"] = 1.0                       # still read-only


def test_predict_warns_about_settings_a_trained_model_fixes(molecules):
    """A --set at predict time that cannot change the trained model is named (it was silently ignored);
    settings the task lets a predict command change, and ones equal to the model's, are not."""
    from core.predict import settings_a_model_fixes
    model = molecules.config(None, ["train.epochs=3"]).to_dict()
    dropout = model["encoder"].pop("dropout")                 # a key an older model's config did not have
    run = {"resolved": {"config": model}}
    cfg = molecules.config(None, ["train.epochs=3", "train.threads=2", "encoder.d_model=32",
                                  f"encoder.dropout={dropout}"])
    ignored = settings_a_model_fixes(cfg, run, ())
    assert ignored == [f"encoder.d_model=32 (the model's: {model['encoder']['d_model']})",
                       f"encoder.dropout={dropout!r} (the model's: none)"]
    assert settings_a_model_fixes(cfg, run, ("encoder",)) == []
    assert settings_a_model_fixes(cfg, {"members": ["."]}, ()) == []      # a run without a stored config
    spectra = get_domain("spectra")                                      # another task than the model's: named
    nir = {"resolved": {"config": spectra.config(None, ["task=nir"]).to_dict()}}
    assert settings_a_model_fixes(spectra.config(None, ["task=lifetime"]), nir, ()) == [
        "task='lifetime' (the model's: 'nir')"]
    assert settings_a_model_fixes(spectra.config(None, ["task=nir"]), nir, ()) == []


@pytest.mark.parametrize("domain, sets, fix", [
    ("molecules", ["data.path=mine.csv", "data.targets=[y]"], "data.dataset=csv"),
    ("timeseries", ["data.path=mine.csv"], "data.dataset=csv"),
    ("timeseries", ["task=classify", "data.path=Mine_TRAIN.ts"], "data.dataset=ts"),
])
def test_your_file_with_a_shipped_dataset_is_refused_not_ignored(domain, sets, fix):
    """data.path with the default (shipped) dataset used to prepare the shipped set and say nothing."""
    from core.domain import get_domain
    with pytest.raises(UserError, match=f"is read only with {fix} .*add --set {fix}"):
        get_domain(domain).config(None, sets)


def test_a_list_given_without_brackets_gets_a_working_hint():
    from core.domain import get_domain
    with pytest.raises(UserError, match=r"--set 'lift.input.image_size=\[1088, 1920\]'"):
        get_domain("poses").config(None, ["lift.input.image_size=1088x1920"])
    with pytest.raises(UserError, match=r"--set 'lift.input.image_size=\[1088, 1920\]'"):
        get_domain("poses").config(None, ["lift.input.image_size=1088 x 1920"])
    with pytest.raises(UserError, match=r"--set 'data.targets=\[maxval\]'"):      # an x inside a name stays
        get_domain("molecules").config(None, ["data.targets=maxval"])
