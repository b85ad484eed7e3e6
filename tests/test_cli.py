"""The command line: every command exists with consistent flags, errors are one clear line, doctor works."""
import subprocess
import sys

import pytest

COMMANDS = ["list", "doctor", "validate", "prepare", "train", "evaluate", "predict", "report"]


def test_help_lists_every_command(capsys):
    from core.cli import build_parser
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0 and all(command in text for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS[2:])
def test_domain_commands_share_flags(command, capsys):
    from core.cli import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    for flag in ("--domain", "--config", "--set"):
        assert flag in text
    assert "molecules," in text.replace(" ", "")  # --domain choices come from the registry


def test_verbosity_flags_work_before_and_after_the_command():
    from core.cli import build_parser
    for argv in (["-q", "list"], ["list", "-q"]):
        assert build_parser().parse_args(argv).quiet is True
    assert build_parser().parse_args(["list"]).quiet is False
    assert build_parser().parse_args(["-v", "list", "-v"]).verbose == 1  # the later one wins, never lost


def test_list_shows_domains_and_attention_backends(run_cli):
    code, out, _ = run_cli("list")
    assert code == 0 and "molecules" in out and "pretrain -> train" in out
    for backend in ("reference", "sdpa", "linear"):
        assert backend in out


def test_doctor_checks_core_packages_and_every_domain():
    done = subprocess.run([sys.executable, "-m", "core.cli", "doctor"], capture_output=True, text=True)
    lines = done.stdout.splitlines()
    for package in ("torch", "snakemake", "scipy", "pandas"):
        line = next(line for line in lines if line.startswith(package + " "))
        assert " ok: " in line, line
    from core.domain import domain_names
    for name in domain_names():
        line = next(line for line in lines if line.startswith(f"domain {name} "))
        assert " ok: " in line, line
    assert "triton" in done.stdout and "device" in done.stdout and "CPU bf16 instructions: " in done.stdout


def test_user_errors_are_one_clean_message(run_cli, tmp_path):
    code, _, err = run_cli("prepare", "-d", "molecules", "-o", tmp_path, "--set", "data.dataset=csv",
                           "--set", f"data.path={tmp_path / 'missing.csv'}", "--set", "data.targets=[y]")
    assert code == 2 and "missing.csv: file not found" in err and "Traceback" not in err
    code, _, err = run_cli("prepare", "-d", "molecules", "-o", tmp_path / "new" / "prep", "--set", "data.dataset=csv",
                           "--set", "data.path=missing.csv", "--set", "data.targets=y")
    assert code == 2 and "--set 'data.targets=[y]'" in err            # a list needs brackets: said how
    code, _, err = run_cli("prepare", "-d", "molecules", "-o", tmp_path / "new" / "prep", "--set", "data.dataset=csv",
                           "--set", "data.path=missing.csv", "--set", "data.targets=[y]")
    assert code == 2 and "relative path is read from" in err and not (tmp_path / "new" / "prep").exists()
    code, _, err = run_cli("train", "-d", "molecules", "-i", tmp_path / "nowhere", "-o", tmp_path / "r")
    assert code == 2 and "not a prepared data directory" in err


def test_stage_must_exist(run_cli, tmp_path):
    (tmp_path / "resolved_config.json").write_text('{"domain": "molecules", "config": {}}')
    code, _, err = run_cli("train", "-d", "molecules", "-i", tmp_path, "-o", tmp_path / "r", "--stage", "warmup")
    assert code == 2 and "pretrain, train" in err


@pytest.mark.parametrize(("args", "message"), [
    (["-i", ""], "argument -i/--input: empty path"),
    (["-i", "x.csv", "-j", "0"], "argument -j/--jobs: must be at least 1, got 0"),
    (["-i", "x.csv", "--chunk-size", "-5"], "argument --chunk-size: must be at least 1"),
])
def test_bad_arguments_are_refused_by_the_parser(args, message, capsys):
    from core.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "-d", "molecules", "-o", "out.csv", "--model", "run", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
