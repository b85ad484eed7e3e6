# The generic rules: prepare -> train (earlier stages, then the final ensemble) -> evaluate -> predict -> report,
# for every {domain}/{run} of workflows/config.yaml. Every rule has a log and a benchmark under
# results/<domain>/<run>/; progress goes to the log as a line every few seconds.


wildcard_constraints:
    domain="[a-z][a-z0-9_]*",
    run="[A-Za-z0-9][A-Za-z0-9_-]*",
    stage="[a-z][a-z0-9_]*",


rule prepare:
    input: prepare_inputs,
    output: f"{R}/prepared/resolved_config.json",
    log: f"{R}/logs/prepare.log",
    benchmark: f"{R}/benchmarks/prepare.tsv"
    params: sciformer=SCIFORMER, run=RUN_DIR, args=prepare_args
    resources: mem_mb=resources("prepare", "mem_mb", 4000), runtime=resources("prepare", "runtime", 30), cpus_per_task=1
    shell: "{params.sciformer} prepare -d {wildcards.domain} -o {params.run}/prepared {params.args} > {log} 2>&1"


rule train_stage:  # an earlier stage (e.g. molecules' masked-token pretraining): one member, initializes the next
    input:
        prepared=rules.prepare.output,
        init=init_input(lambda w: w.stage),
    output: f"{R}/stage-{{stage}}/run.json",
    log: f"{R}/logs/train-{{stage}}.log",
    benchmark: f"{R}/benchmarks/train-{{stage}}.tsv"
    params: sciformer=SCIFORMER, run=RUN_DIR, args=run_args, init=init_arg(lambda w: w.stage)
    resources: mem_mb=resources("train", "mem_mb", 8000), runtime=resources("train", "runtime", 240), cpus_per_task=1
    shell: "{params.sciformer} train -d {wildcards.domain} --stage {wildcards.stage} -i {params.run}/prepared -o {params.run}/stage-{wildcards.stage} {params.init} {params.args} > {log} 2>&1"


rule train:  # the final stage: an ensemble of seeds, members in parallel processes or each on `nproc` DDP processes
    input:
        prepared=rules.prepare.output,
        init=init_input(final_stage),
    output: f"{R}/model/run.json",
    log: f"{R}/logs/train.log",
    benchmark: f"{R}/benchmarks/train.tsv"
    threads: train_threads
    params: sciformer=SCIFORMER, run=RUN_DIR, args=run_args, init=init_arg(final_stage), stage=final_stage,
            parallel=lambda w, threads: train_parallelism(w, threads)
    resources: mem_mb=resources("train", "mem_mb", 8000), runtime=resources("train", "runtime", 240), cpus_per_task=lambda w, threads: threads
    shell: "{params.sciformer} train -d {wildcards.domain} --stage {params.stage} -i {params.run}/prepared -o {params.run}/model {params.parallel} {params.init} {params.args} > {log} 2>&1"


rule evaluate:  # the model and the baselines on the same test split
    input:
        prepared=rules.prepare.output,
        model=rules.train.output,
    output:
        metrics=f"{R}/metrics.json",
        predictions=f"{R}/test_predictions.csv",
    log: f"{R}/logs/evaluate.log",
    benchmark: f"{R}/benchmarks/evaluate.tsv"
    params: sciformer=SCIFORMER, run=RUN_DIR, args=run_args
    resources: mem_mb=resources("evaluate", "mem_mb", 8000), runtime=resources("evaluate", "runtime", 120), cpus_per_task=1
    shell: "{params.sciformer} evaluate -d {wildcards.domain} -i {params.run}/prepared --model {params.run}/model -o {output.metrics} --predictions {output.predictions} {params.args} > {log} 2>&1"


rule predict:  # new data through the same command a user runs; the output set lands in prediction/
    input:
        data=predict_needs,
        model=rules.train.output,
    output: directory(f"{R}/prediction"),
    log: f"{R}/logs/predict.log",
    benchmark: f"{R}/benchmarks/predict.tsv"
    params: sciformer=SCIFORMER, run=RUN_DIR, args=run_args, name=predict_output_name, source=lambda w: shlex.quote(predict_input(w))
    resources: mem_mb=resources("predict", "mem_mb", 8000), runtime=resources("predict", "runtime", 120), cpus_per_task=1
    shell: "{params.sciformer} predict -d {wildcards.domain} -i {params.source} -o {output}/{params.name} --model {params.run}/model {params.args} > {log} 2>&1"


rule report:  # metrics table + every figure the task writes, collected by pattern into the Snakemake report
    input: rules.evaluate.output.metrics,
    output:
        directory=report(directory(f"{R}/report"), patterns=["{name}.png", "{name}.html", "{name}.wav"],
                         caption="report/result.rst", category="{domain}", subcategory="{run}"),
    log: f"{R}/logs/report.log",
    benchmark: f"{R}/benchmarks/report.tsv"
    params: sciformer=SCIFORMER, run=RUN_DIR, args=run_args
    resources: mem_mb=resources("report", "mem_mb", 4000), runtime=resources("report", "runtime", 30), cpus_per_task=1
    shell: "{params.sciformer} report -d {wildcards.domain} -i {input} -o {output.directory} {params.args} > {log} 2>&1"


for _domain in config["domains"]:
    rule:  # `snakemake <domain>`: every run of the domain
        name: _domain
        input: targets(_domain)
