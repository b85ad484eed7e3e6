# Prediction at scale: `snakemake -c8 sharded` (or with the SLURM profile) splits each configured input into
# shards, predicts every shard as its own job with the same `sciformer predict` a user runs, and gathers the
# parts in the original order with one .meta.json. A rerun after a failure predicts only the missing shards.
#   sharded:
#     <job>: {domain: molecules, model: <run dir>, input: big.csv, shards: 8, set: [], jobs: 1,
#              precision: fp32}   # or bf16: faster where the CPU has bf16 instructions (sciformer predict --help)
# -> results/sharded/<job>/<the task's default output name> (e.g. predictions.csv, or a folder)
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
