# Prediction at scale: `snakemake -c8 sharded` (or with the SLURM profile) splits each configured input into
# shards, predicts every shard as its own job with the same `sciformer predict` a user runs, and gathers the
# parts in the original order with one .meta.json. A rerun after a failure predicts only the missing shards.
#   sharded:
#     <job>: {domain: molecules, model: <run dir>, input: big.csv, shards: 8, set: [], jobs: 1}
# -> results/sharded/<job>/<the task's default output name> (e.g. predictions.csv, or a folder)
from core.runs import run_info

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
    return " ".join(f"--set {shlex.quote(x)}" for x in s.get("set", [])) + f" -j {s.get('jobs', 1)}"


rule shard_split:
    input: lambda w: SHARDED[w.job]["input"],
    output: directory(f"{S}/shards"),
    log: f"{S}/logs/split.log",
    benchmark: f"{S}/benchmarks/split.tsv"
    params: sciformer=SCIFORMER, n=lambda w: SHARDED[w.job]["shards"]
    resources: mem_mb=resources("prepare", "mem_mb", 4000), runtime=resources("prepare", "runtime", 30), cpus_per_task=1
    shell: "{params.sciformer} split -i {input} -o {output} -n {params.n} > {log} 2>&1"


rule shard_predict:
    input:
        shards=rules.shard_split.output,
        model=lambda w: f"{SHARDED[w.job]['model']}/run.json",
    output: directory(f"{S}/parts/shard-{{k}}"),
    log: f"{S}/logs/predict-{{k}}.log",
    benchmark: f"{S}/benchmarks/predict-{{k}}.tsv"
    wildcard_constraints: k="[0-9]{4}"
    threads: lambda w: SHARDED[w.job].get("jobs", 1)
    params: sciformer=SCIFORMER, domain=lambda w: SHARDED[w.job]["domain"], model=lambda w: SHARDED[w.job]["model"],
            source=shard_file, name=lambda w: shard_output_name(w.job), args=shard_args
    resources: mem_mb=resources("predict", "mem_mb", 8000), runtime=resources("predict", "runtime", 120), cpus_per_task=lambda w, threads: threads
    shell: "{params.sciformer} predict -d {params.domain} -i {params.source} -o {output}/{params.name} --model {params.model} {params.args} > {log} 2>&1"


rule shard_gather:
    input: shard_parts,
    output: f"{S}/gathered.done",
    log: f"{S}/logs/gather.log",
    benchmark: f"{S}/benchmarks/gather.tsv"
    params: sciformer=SCIFORMER, parts=shard_part_outputs, out=lambda w: f"results/sharded/{w.job}/{shard_output_name(w.job)}"
    resources: mem_mb=resources("report", "mem_mb", 4000), runtime=resources("predict", "runtime", 120), cpus_per_task=1
    shell: "{params.sciformer} gather -i {params.parts} -o {params.out} > {log} 2>&1 && touch {output}"


rule sharded:  # every configured sharded prediction
    input: [f"results/sharded/{job}/gathered.done" for job in SHARDED],
