# Shared helpers for every domain's rules. Rules stay thin: each calls the `sciformer` CLI, so a workflow
# run and a stand-alone `sciformer predict` share one code path.
import shlex

from snakemake.utils import min_version, validate

min_version("8.0")
validate(config, "schemas/config.schema.yaml")

# One intra-op thread per job: parallelism comes from Snakemake jobs (oversubscribed threads are 10-40x slower).
shell.prefix("set -euo pipefail; export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1; ")

SCIFORMER = config["sciformer"]


def domain_args(domain):
    """--config/--set arguments for a domain, from the workflow config (validated above)."""
    settings = config[domain]
    args = []
    if settings.get("config"):
        args += ["--config", settings["config"]]
    for item in settings.get("set", []):
        args += ["--set", item]
    return " ".join(shlex.quote(a) for a in args)


def logs(domain, step):
    return f"results/{domain}/logs/{step}.log"


def bench(domain, step):
    return f"results/{domain}/benchmarks/{step}.tsv"
