# Shared by every rule. The workflow is generic: rules run over {domain}/{run} wildcards, and what exists
# comes from workflows/config.yaml (one entry per domain) and from the domains themselves (their tasks,
# stages and output kinds, read through the registry). Rules stay thin: each calls the `sciformer` CLI, so a
# workflow run and a stand-alone `sciformer predict` share one code path.
import functools
import shlex
from pathlib import Path

from snakemake.utils import min_version, validate

from core.domain import get_domain
from core.io import package_file
from core.runs import run_info

min_version("8.0")
validate(config, "schemas/config.schema.yaml")   # also fills defaults (the `sciformer` command)


def _config_problems():
    """What the schema cannot know: domains and tasks that exist, config files that exist. Checked when the
    workflow loads, so a typo fails every target with its name, not as "No rule to produce ..."."""
    from core.errors import UserError
    problems = []
    for domain, settings in config["domains"].items():
        settings = settings or {}
        try:
            names = get_domain(domain).task_names()
        except UserError as exc:
            problems.append(f"domains.{domain}: {exc}")
            continue
        if settings.get("config") and not Path(settings["config"]).exists():
            problems.append(f"domains.{domain}.config: {settings['config']} not found (relative paths are read "
                            f"from {Path.cwd()})")
        for run, rs in (settings.get("runs") or {}).items():
            task = (rs or {}).get("task", run)
            if task not in names:
                problems.append(f"domains.{domain}.runs.{run}: task {task!r} is not a task of {domain}; set "
                                f"task: to one of {', '.join(names)}")
    return problems


_PROBLEMS = _config_problems()
if _PROBLEMS:
    raise ValueError("workflow config:\n  - " + "\n  - ".join(_PROBLEMS))

# One intra-op thread per job: parallelism comes from Snakemake jobs (oversubscribed threads are 10-40x slower).
shell.prefix("set -euo pipefail; export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; ")

SCIFORMER = config["sciformer"]
R = "results/{domain}/{run}"   # output patterns


def RUN_DIR(wildcards):
    """The run's folder, for shell commands (patterns are not expanded there)."""
    return f"results/{wildcards.domain}/{wildcards.run}"


def _runs():
    """{(domain, run): settings}. A domain entry without `runs` gets one run per task, named after it."""
    out = {}
    for domain, settings in config["domains"].items():
        settings = settings or {}
        runs = settings.get("runs") or {name: {} for name in get_domain(domain).task_names()}
        for run, rs in runs.items():
            rs = rs or {}
            out[(domain, run)] = {"task": rs.get("task", run), "config": settings.get("config", ""),
                                  "set": [*settings.get("set", []), *rs.get("set", [])],
                                  "init": rs.get("init", ""), "predict": rs.get("predict", ""),
                                  "nproc": rs.get("nproc", 0)}
    return out


RUNS = _runs()


def task_of(domain, run):
    return get_domain(domain).task(RUNS[(domain, run)]["task"])


def run_args(wildcards, leave_out=()):
    """--config/--set arguments of a run (the task is always explicit), without --set items inside `leave_out`."""
    from core.config import within
    rs = RUNS[(wildcards.domain, wildcards.run)]
    args = ["--config", rs["config"]] if rs["config"] else []
    for item in [f"task={rs['task']}", *rs["set"]]:
        if not within(item.split("=", 1)[0].strip(), leave_out):
            args += ["--set", item]
    return " ".join(shlex.quote(a) for a in args)


def prepare_args(wildcards):
    """run_args without train.* (what prepare never reads), so retuning training in a run's `set:` reruns train
    and what follows, not prepare (Snakemake reruns a job whose params changed). encoder.* stays: domains check
    it against data settings (molecules features.max_len, poses lift.model.hot_prune_after)."""
    return run_args(wildcards, leave_out=("train",))


@functools.cache
def run_config(domain, run):
    """The run's resolved config (the domain's defaults, the run's --config and --set), as the CLI reads it."""
    rs = RUNS[(domain, run)]
    return get_domain(domain).config(rs["config"] or None, [f"task={rs['task']}", *rs["set"]])


def ensemble_size(domain, run):
    """Members of the run's final stage, exactly as `sciformer train` will read them."""
    cfg = run_config(domain, run)
    task = get_domain(domain).task_of(cfg)
    return int(task.train_settings(cfg, task.stages[-1])["ensemble"])


def prepare_inputs(wildcards):
    """The run's config file, the user's data files it names (the task's `data_files`) and the defaults it
    sits on (the domain's config.yaml, core/defaults.yaml): editing any of them reruns the run (params alone
    would only see the names)."""
    import core
    rs = RUNS[(wildcards.domain, wildcards.run)]
    dom = get_domain(wildcards.domain)
    cfg = run_config(wildcards.domain, wildcards.run)
    defaults = [str(dom.default_config_path()), str(Path(core.__file__).parent / "defaults.yaml")]
    return defaults + ([rs["config"]] if rs["config"] else []) + [str(p) for p in dom.task_of(cfg).data_files(cfg)]


def train_threads(wildcards):
    """The final stage's processes: `nproc` (DDP per member), or up to 2 ensemble members side by side; a
    one-member run asks for one core, so another run's training can use the second."""
    return RUNS[(wildcards.domain, wildcards.run)]["nproc"] or min(2, ensemble_size(wildcards.domain, wildcards.run))


def train_parallelism(wildcards, threads):
    """`--nproc N`: each member on N DistributedDataParallel processes (one after another); otherwise
    `-j threads`: members in parallel processes. docs/cluster.md says which to choose when."""
    nproc = RUNS[(wildcards.domain, wildcards.run)]["nproc"]
    return f"--nproc {nproc}" if nproc else f"-j {threads}"


def resolve_input(value, domain, run):
    """A path; `pkg:<package>/<path>`: a data file inside an installed package (found without importing it);
    `prepared:<file>`: a file the run's prepare step writes (e.g. spectra held back from the NIR set)."""
    if value.startswith("pkg:"):
        package, _, rel = value[4:].partition("/")
        return str(package_file(package, rel))
    if value.startswith("prepared:"):
        return f"results/{domain}/{run}/prepared/{value[len('prepared:'):]}"
    return value


def stage_dir(wildcards, stage):
    task = task_of(wildcards.domain, wildcards.run)
    return f"results/{wildcards.domain}/{wildcards.run}/" + ("model" if stage == task.stages[-1] else f"stage-{stage}")


def init_for(wildcards, stage):
    """The run directory that initializes `stage`: the configured checkpoint for the final stage (`init`),
    else the previous stage of the same run; none for the first stage."""
    task = task_of(wildcards.domain, wildcards.run)
    k = task.stages.index(stage)
    if k == 0:
        return None
    configured = RUNS[(wildcards.domain, wildcards.run)]["init"]
    if configured and stage == task.stages[-1]:
        return configured
    return stage_dir(wildcards, task.stages[k - 1])


def init_input(stage_of):
    def inputs(wildcards):
        init = init_for(wildcards, stage_of(wildcards))
        return [f"{init}/run.json"] if init else []
    return inputs


def init_arg(stage_of):
    def arg(wildcards):
        init = init_for(wildcards, stage_of(wildcards))
        return f"--init {shlex.quote(init)}" if init else ""
    return arg


def final_stage(wildcards):
    return task_of(wildcards.domain, wildcards.run).stages[-1]


def predict_input(wildcards):
    return resolve_input(RUNS[(wildcards.domain, wildcards.run)]["predict"], wildcards.domain, wildcards.run)


def predict_needs(wildcards):
    """What must exist before predicting: the input file, or the prepare step that writes it."""
    value = RUNS[(wildcards.domain, wildcards.run)]["predict"]
    if value.startswith("prepared:"):
        return [f"results/{wildcards.domain}/{wildcards.run}/prepared/resolved_config.json"]
    return [predict_input(wildcards)]


def predict_output_name(wildcards):
    return task_of(wildcards.domain, wildcards.run).default_output


def resources(step, key, default):
    return config.get("resources", {}).get(step, {}).get(key, default)


def targets(domain):
    """What `snakemake <domain>` builds: every run's report, and its prediction where an input is set."""
    out = []
    for (d, run), rs in RUNS.items():
        if d == domain:
            out.append(f"results/{d}/{run}/report")
            if rs["predict"]:
                out.append(f"results/{d}/{run}/prediction")
    return out


# -- prediction at scale (workflows/sharded.smk) ------------------------------------------------------------
SHARDED = config.get("sharded") or {}
S = "results/sharded/{job}"


def shard_output_name(job):
    s = SHARDED[job]
    return get_domain(s["domain"]).task(run_info(s["model"]).get("task")).default_output


def shard_file(wildcards):
    source = Path(SHARDED[wildcards.job]["input"])
    suffix = ".csv" if source.is_dir() else source.suffix.lower()
    return f"results/sharded/{wildcards.job}/shards/shard-{wildcards.k}{suffix}"


def shard_parts(wildcards):
    return [f"results/sharded/{wildcards.job}/parts/shard-{k:04d}" for k in range(SHARDED[wildcards.job]["shards"])]


def shard_part_outputs(wildcards):
    name = shard_output_name(wildcards.job)
    return " ".join(shlex.quote(f"{part}/{name}") for part in shard_parts(wildcards))


def shard_args(wildcards):
    s = SHARDED[wildcards.job]
    return (" ".join(f"--set {shlex.quote(x)}" for x in s.get("set", [])) + f" -j {s.get('jobs', 1)}"
            + f" --precision {s.get('precision', 'fp32')}")
