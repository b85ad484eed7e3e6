"""Implementations of the CLI commands (kept apart from argument parsing so `--help` stays fast)."""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from core import distributed
from core import domain as registry
from core.config import value_at
from core.errors import ConfigError, UserError
from core.io import atomic_path, file_sha256, read_json, versions, write_json
from core.task import Task

log = logging.getLogger("sciformer")


def domain_name(args: argparse.Namespace) -> str:
    """-d, else the domain the command's trained model (--model) or prepared folder (-i of train and evaluate)
    records: a model knows what it was trained for, so `predict --model M -i X -o Y` needs no -d."""
    if getattr(args, "domain", None):
        return args.domain
    name, source = None, ""
    if getattr(args, "model", None) is not None:
        from core.runs import run_info
        name, source = run_info(args.model).get("domain"), f"--model {args.model}"
    elif args.command in ("train", "evaluate"):
        from core.prepared import read_resolved
        name, source = read_resolved(args.input).get("domain"), f"-i {args.input}"
    if not name:
        why = f" ({source} does not record its domain)" if source else ""
        raise UserError(f"-d/--domain: which domain{why}? one of {', '.join(registry.registered_names())}")
    return name


def _domain_and_config(args: argparse.Namespace, prepared: Path | None = None):
    """The domain and the command's config; with `prepared` (train, evaluate) the prepared folder's settings
    sit under the command's own (core/prepared.py)."""
    dom = registry.get_domain(domain_name(args))
    return dom, dom.config(args.config, args.set, prepared=prepared)


def _progress(args, cfg) -> bool:
    return bool(cfg.get("train.progress", True)) and not args.quiet


def cmd_list(args) -> int:
    from core.attention import available_attention
    print("domains and their tasks (the first is the default; stages in training order):")
    for dom in registry.iter_domains():
        print(f"  {dom.name:<12} {dom.description}")
        for name in dom.task_names():
            task = dom.task(name)
            print(f"    {name:<14} stages: {' -> '.join(task.stages):<18} {task.description}")
    for name, why in registry.broken_domains().items():
        print(f"  {name:<12} FAILED TO LOAD: {why}")
    print("attention backends (encoder.attention):")
    for name, backend in available_attention().items():
        print(f"  {name:<17} {backend.kind:<12} devices: {','.join(backend.devices):<9} {backend.description}")
    return 0


def cmd_doctor(args) -> int:
    from core.doctor import run_doctor
    return run_doctor()


def cmd_validate(args) -> int:
    dom, cfg = _domain_and_config(args)
    if args.model:   # the model's task, not the config's default (predict uses the model's)
        from core.runs import run_info
        task_name = run_info(args.model).get("task") or dom.task_of(cfg).name
    else:
        task_name = dom.task_of(cfg).name
        problems = dom.task_of(cfg).check_data(cfg)    # what prepare would refuse, found without preparing
        if problems:
            raise ConfigError(problems, source="data")
    print(f"config OK for {dom.name}/{task_name} (sources: {', '.join(cfg.sources)})")
    if args.input:
        from core.predict import prepare_prediction
        if not args.model:
            raise UserError("validate -i needs --model: an input is checked against what a model expects")
        task, _, _ = prepare_prediction(dom, args.model, args.input, config=cfg)  # what predict checks first
        print(f"input OK: {args.input} passes the checks `predict` makes before it loads model {args.model} "
              f"({dom.name}/{task.name}); items found unusable while predicting (a manifest row's missing file, "
              "a NaN row, ...) get a status in the output, or stop it with --on-invalid error")
    return 0


def cmd_prepare(args) -> int:
    """Prepared into a staging folder inside -o, then moved into place (core/folders.py): an interrupted or
    failed prepare leaves the earlier files as they were; a rerun replaces only what the earlier prepare wrote.
    Every file it wrote is hashed into resolved_config.json, and train/evaluate check them before use."""
    from core.folders import install, staging
    from core.prepared import MARKER, RESOLVED_FILE, file_hashes, legacy_entries
    dom, cfg = _domain_and_config(args)
    created = not args.output.exists()
    stage = staging(args.output)
    try:
        hashes = dom.task_of(cfg).prepare(cfg, stage)
        write_json(stage / RESOLVED_FILE, {**cfg.resolved(hashes), "prepared_files": file_hashes(stage)})
        install(stage, args.output, MARKER, last=RESOLVED_FILE, legacy=legacy_entries(args.output))
    except UserError as exc:   # nothing is installed, but a file the message points to is kept where it says
        for name in exc.keep:
            if (stage / name).exists() and not (args.output / name).exists():
                os.replace(stage / name, args.output / name)
        raise UserError(str(exc).replace(str(stage), str(args.output))) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and args.output.is_dir() and not any(args.output.iterdir()):
            args.output.rmdir()     # a failed prepare leaves no empty folder behind
    print(f"prepared {dom.name} data in {args.output}")
    return 0


def run_fingerprints(cfg, stage: str, init: Path | None, hashes: dict[str, str],
                     evaluation_only: tuple[str, ...] = ()) -> tuple[str, str]:
    """What a trained member depends on: config (not display settings, not the task's evaluation-only keys),
    stage, data and the init weights, with the code's source hash and without it: (full, inputs only)."""
    values = cfg.to_dict()
    for key in ("train.progress", *evaluation_only):
        *parents, leaf = key.split(".")
        node = value_at(values, ".".join(parents)) if parents else values
        if isinstance(node, dict):
            node.pop(leaf, None)
    init_hash = None
    if init is not None:
        from core.runs import member_dirs
        init_hash = [file_sha256(m / "model.safetensors") for m in member_dirs(init)]
    code = {k: v for k, v in versions().items() if k in ("sciformer", "torch", "sciformer_source")}

    def digest(code_part: dict) -> str:
        blob = json.dumps({"config": values, "stage": stage, "data": hashes, "init": init_hash, "code": code_part},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()
    return digest(code), digest({k: v for k, v in code.items() if k != "sciformer_source"})


def _reusable(member: Path, fingerprints: tuple[str, str]) -> bool:
    """A finished member trained from the same inputs and code is kept; one from other inputs is removed, so a
    changed config, data set, init or code never silently reuses stale weights. An interrupted member whose
    inputs match but whose code changed since (a fix made while it trained) is resumed, with a warning."""
    if not (member / "meta.json").exists():
        return False
    meta = read_json(member / "meta.json")
    full, inputs = fingerprints
    partial = (member / "resume.json").exists()
    if meta.get("fingerprint") != full:
        if partial and meta.get("inputs_fingerprint") == inputs:
            log.warning("%s was interrupted under other code; resuming it with this code", member)
            return False
        log.info("%s was trained from other inputs or code; retraining it", member)
        shutil.rmtree(member)
        return False
    return "train_seconds" in meta and not partial


def train_member(domain: str, config: str | None, overrides: list[str], prepared: Path, member: Path,
                 stage: str, init: Path | None, k: int, fingerprint: tuple[str, str], progress: bool | str) -> None:
    """Train ensemble member k (seed + k). Top-level so a worker process can run it. progress: True, False,
    or "lines" (plain lines even on a terminal: a worker of `train -j`)."""
    from core.prepared import recorded_hashes
    from core.train import fit, seed_everything
    dom = registry.get_domain(domain)
    cfg = dom.config(config, overrides, prepared=prepared)
    task = dom.task_of(cfg)
    # train.* <- <task>.train.* <- <stage>.train.*, e.g. classify.train.epochs, pretrain.train.max_steps
    train_cfg = {**task.train_settings(cfg, stage), "progress": progress}
    seed = int(cfg["seed"]) + k
    seed_everything(seed)  # before the model is built: its initial weights come from the global RNG
    training = task.build_training(cfg, prepared, stage, init, seed)
    fit(training, train_cfg, member, seed, extra_meta={
        "domain": dom.name, "task_name": task.name, "stage": stage, "fingerprint": fingerprint[0],
        "inputs_fingerprint": fingerprint[1],
        "resolved": cfg.resolved(recorded_hashes(prepared))})   # checked by the command


def cmd_train(args) -> int:
    from core.prepared import verified_hashes
    from core.runs import CALIBRATION_FILE, RUN_FILE, run_files
    dom, cfg = _domain_and_config(args, prepared=args.input)
    task = dom.task_of(cfg)
    stage = args.stage or task.stages[-1]
    if stage not in task.stages:
        raise UserError(f"--stage {stage!r} is not a stage of {dom.name}/{task.name}; choose one of "
                        f"{', '.join(task.stages)}")
    hashes = verified_hashes(args.input)
    if args.init and not args.init.exists():
        raise UserError(f"--init {args.init}: no such run directory; train the earlier stage first")
    final = stage == task.stages[-1]
    # only the final stage is an ensemble: pretraining once is enough to initialize every member
    n_members = int(task.train_settings(cfg, stage)["ensemble"]) if final else 1
    members = [args.output / f"member_{k}" for k in range(n_members)]
    (args.output / RUN_FILE).unlink(missing_ok=True)  # written again only when every member is done
    fingerprint = run_fingerprints(cfg, stage, args.init, hashes, task.evaluation_only)
    todo = [k for k, m in enumerate(members) if not _reusable(m, fingerprint)]
    call = [(dom.name, args.config, args.set, args.input, members[k], stage, args.init, k, fingerprint)
            for k in todo]
    jobs = min(max(1, args.jobs), len(todo) or 1)
    timeout = float(cfg.get("train.ddp_timeout", 600))
    if args.nproc > 1 or distributed.under_torchrun():
        if jobs > 1:
            raise UserError("use either -j (ensemble members in parallel) or --nproc (one member on several "
                            "processes), not both")
        if distributed.under_torchrun():   # this process is one rank of torchrun's group
            distributed.init_from_env(timeout)
            for c in call:
                train_member(*c, progress=_progress(args, cfg))
            if not distributed.current().main:
                return 0   # only rank 0 writes the run
        else:   # each member on --nproc local processes, one member after the other
            for c in call:
                distributed.launch(train_member, args.nproc, (*c, _progress(args, cfg)), timeout)
    elif jobs == 1:
        for c in call:
            train_member(*c, progress=_progress(args, cfg))
    else:  # members in parallel processes, one torch thread each (spawn: no forked torch state)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from core.logs import configure_logging
        # workers print plain progress lines (their bars would share one terminal) and log at our level
        shown = "lines" if _progress(args, cfg) else False
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=configure_logging,
                                 initargs=(logging.getLogger().getEffectiveLevel(),)) as pool:
            for future in [pool.submit(train_member, *c, progress=shown) for c in call]:
                future.result()
    calibrated = None
    (args.output / CALIBRATION_FILE).unlink(missing_ok=True)
    if final and type(task).calibrate is not Task.calibrate:   # load the members only for a task that calibrates
        from core.runs import load_members_from
        from core.train import pick_device
        loaded = load_members_from(task, members, pick_device(cfg["train.device"]))
        calibration = task.calibrate(cfg, args.input, loaded)
        if calibration is not None:
            write_json(args.output / CALIBRATION_FILE, calibration)
            calibrated = CALIBRATION_FILE
    write_json(args.output / RUN_FILE, {"domain": dom.name, "task": task.name, "stage": stage,
                                        "members": [m.name for m in members], "calibration": calibrated,
                                        "init": str(args.init) if args.init else None,
                                        "files": run_files(args.output, members),
                                        "resolved": cfg.resolved(hashes)})
    print(f"trained {dom.name}/{task.name} ({stage}): {n_members} member(s) in {args.output}")
    return 0


def cmd_evaluate(args) -> int:
    from core.predict import settings_a_model_fixes
    from core.prepared import verified_hashes
    from core.runs import load_members, run_info
    from core.train import pick_device
    dom, cfg = _domain_and_config(args, prepared=args.input)
    task = dom.task_of(cfg)
    run = run_info(args.model)
    trained = run.get("task")
    if trained and trained != task.name:
        raise UserError(f"{args.model}: the model was trained for task {trained!r} but the config says "
                        f"task={task.name}; add --set task={trained}")
    hashes = verified_hashes(args.input)
    differing = settings_a_model_fixes(cfg, run, (*task.evaluation_only, *task.data_settings,
                                                  *task.prediction_settings))
    if differing:   # the model's own settings decide how it predicts; metrics.json records both configs
        log.warning("the model in %s was trained with other settings than this command gives: %s; it is "
                    "evaluated as trained", args.model, "; ".join(differing))
    members = load_members(task, args.model, pick_device(cfg["train.device"]))
    task.artifacts_dir = args.output.with_name(args.output.stem + "_artifacts")
    args.output.unlink(missing_ok=True)    # an interrupted rerun leaves no metrics file whose artifacts are gone
    shutil.rmtree(task.artifacts_dir, ignore_errors=True)   # never mix artifacts of two evaluations
    task.artifacts_dir.mkdir(parents=True)
    rows, predictions = task.evaluate(cfg, args.input, members)
    pred_path = args.predictions or args.output.with_name(args.output.stem + "_predictions.csv")
    with atomic_path(pred_path) as tmp:
        predictions.to_csv(tmp, index=False)
    artifacts = None
    if any(task.artifacts_dir.iterdir()):
        artifacts = os.path.relpath(task.artifacts_dir, args.output.parent)
    else:
        task.artifacts_dir.rmdir()
    write_json(args.output, {"rows": rows, "predictions": os.path.relpath(pred_path, args.output.parent),
                             "artifacts": artifacts, "resolved": cfg.resolved(hashes),
                             "model": {"path": str(args.model), "resolved": run.get("resolved")}})
    print(format_table(rows))
    return 0


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no metrics)"
    frame = pd.DataFrame(rows)
    keys = [c for c in ("task", "dataset", "split", "metric") if c in frame]
    pivot = frame.pivot_table(index="method", columns=keys, values="value", aggfunc="first")
    return pivot.to_string(float_format=lambda v: f"{v:.4g}")


def cmd_predict(args) -> int:
    from core.predict import predict_file
    dom, cfg = _domain_and_config(args)
    stats = predict_file(dom, args.model, args.input, args.output, chunk_size=args.chunk_size,
                         on_invalid=args.on_invalid, device=args.device, threads=int(cfg["train.threads"]),
                         progress=not args.quiet, jobs=args.jobs, config=cfg,
                         precision=args.precision)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(stats["status"].items(), key=lambda kv: -kv[1]))
    skipped = stats.get("skipped", 0)   # output rows dropped; an item (a forecast's series) may give many rows
    print(f"read {stats['rows_in']} input item(s), wrote {args.output}"
          + (f" ({stats['rows_out']} output rows" + (f"; {skipped} skipped as invalid" if skipped else "") + ")"
             if stats["rows_out"] or skipped else "")
          + (f"; status: {counts}" if counts else ""))
    if skipped and not stats["rows_out"]:
        log.warning("every row was skipped as invalid, so %s holds no predictions; the status counts say why "
                    "(--on-invalid mark keeps the rows with their status)", args.output)
    return 0


def cmd_split(args) -> int:
    from core.shards import split
    paths = split(args.input, args.output, args.shards)
    print(f"split {args.input} into {len(paths)} shards in {args.output}")
    return 0


def cmd_gather(args) -> int:
    from core.shards import gather
    meta = gather(args.input, args.output)
    print(f"gathered {len(meta['shards'])} shards into {args.output}: {meta['rows_in']} input item(s)")
    return 0


def cmd_report(args) -> int:
    dom, cfg = _domain_and_config(args)
    if not args.input.exists():
        raise UserError(f"{args.input}: metrics file not found; run `sciformer evaluate -o {args.input}` first")
    metrics = read_json(args.input)
    if not isinstance(metrics, dict) or not {"rows", "predictions", "resolved"} <= set(metrics):
        raise UserError(f"{args.input}: not a metrics file written by `sciformer evaluate`")
    pred_path = args.input.parent / metrics["predictions"]
    if not pred_path.exists():
        raise UserError(f"{pred_path}: the test predictions named in {args.input} are missing; rerun evaluate")
    # staged, then moved into place (core/folders.py): a rerun removes the figures of the earlier report and
    # nothing else; metrics.html, the completion file, comes last
    from core.folders import install, staging
    out = args.output
    stage = staging(out)
    try:
        figures = _write_report(dom, cfg, args.input, metrics, pred_path, stage)
        legacy = ["metrics.html", "metrics.csv"] if (out / "metrics.html").exists() else []
        install(stage, out, ".sciformer-report", last="metrics.html", legacy=legacy)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"report for {dom.name} in {out}: metrics.html, metrics.csv" + "".join(f", {f.name}" for f in figures))
    return 0


def _write_report(dom, cfg, metrics_path: Path, metrics: dict, pred_path: Path, folder: Path) -> list[Path]:
    """metrics.csv, metrics.html and the task's figures into `folder`; returns the figures."""
    rows = metrics["rows"]
    predictions = pd.read_csv(pred_path)
    # the evaluated task (a spectra nir run's metrics get nir's figures without --set task=nir)
    evaluated = (metrics["resolved"].get("config") or {}).get("task")
    task = dom.task(evaluated) if evaluated and "task" not in cfg.to_given() else dom.task_of(cfg)
    if metrics.get("artifacts"):
        task.artifacts_dir = metrics_path.parent / metrics["artifacts"]
    figures = task.report_figures(predictions, rows, folder)
    table = pd.DataFrame(rows)
    with atomic_path(folder / "metrics.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(folder / "metrics.html") as tmp:
        tmp.write_text(_html_page(dom.name, format_table(rows), table, metrics["resolved"], figures))
    return figures


def _html_page(name: str, pivot: str, table: pd.DataFrame, resolved: dict, figures: list[Path]) -> str:
    imgs = "".join(f'<p><img src="{html.escape(f.name)}" style="max-width:640px"></p>' for f in figures)
    return (f"<html><head><meta charset='utf-8'><title>sciformer {name}</title></head><body>"
            f"<h1>sciformer: {html.escape(name)}</h1><h2>Model vs baselines (same test split)</h2>"
            f"<pre>{html.escape(pivot)}</pre>{imgs}<h2>All rows</h2>{table.to_html(index=False)}"
            f"<h2>Resolved configuration, versions, data hashes</h2>"
            f"<pre>{html.escape(json.dumps(resolved, indent=2))}</pre></body></html>")

