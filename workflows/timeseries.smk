# Timeseries: two branches through the same CLI, {task} = forecast | classify:
# prepare -> train (+ conformal calibration) -> evaluate (model vs baselines, same windows) -> predict -> report.
TS = "results/timeseries"
TS_TASKS = ["forecast", "classify"]


def ts_args(wildcards):
    """The domain's --config/--set plus the branch's own settings (classify picks its dataset there)."""
    extra = [] if wildcards.task == "forecast" else ["task=classify", *config["timeseries"]["classify_set"]]
    return " ".join(filter(None, [domain_args("timeseries"), *(f"--set {shlex.quote(s)}" for s in extra)]))


def ts_predict_input(wildcards):
    return config["timeseries"]["forecast_input" if wildcards.task == "forecast" else "classify_input"]


rule timeseries_prepare:
    output: f"{TS}/{{task}}/prepared/resolved_config.json",
    log: logs("timeseries", "{task}_prepare"),
    benchmark: bench("timeseries", "{task}_prepare")
    wildcard_constraints: task="forecast|classify"
    params: args=ts_args
    shell: "{SCIFORMER} -q prepare -d timeseries -o {TS}/{wildcards.task}/prepared {params.args} > {log} 2>&1"


rule timeseries_train:
    input: rules.timeseries_prepare.output,
    output: f"{TS}/{{task}}/model/run.json",
    log: logs("timeseries", "{task}_train"),
    benchmark: bench("timeseries", "{task}_train")
    wildcard_constraints: task="forecast|classify"
    params: args=ts_args
    shell: "{SCIFORMER} -q train -d timeseries -i {TS}/{wildcards.task}/prepared -o {TS}/{wildcards.task}/model {params.args} > {log} 2>&1"


rule timeseries_evaluate:
    input:
        prepared=rules.timeseries_prepare.output,
        model=rules.timeseries_train.output,
    output:
        metrics=f"{TS}/{{task}}/metrics.json",
        predictions=f"{TS}/{{task}}/test_predictions.csv",
    log: logs("timeseries", "{task}_evaluate"),
    benchmark: bench("timeseries", "{task}_evaluate")
    wildcard_constraints: task="forecast|classify"
    params: args=ts_args
    shell: "{SCIFORMER} -q evaluate -d timeseries -i {TS}/{wildcards.task}/prepared --model {TS}/{wildcards.task}/model -o {output.metrics} --predictions {output.predictions} {params.args} > {log} 2>&1"


rule timeseries_predict:
    input:
        data=ts_predict_input,
        model=rules.timeseries_train.output,
    output: f"{TS}/{{task}}/predictions.csv",
    log: logs("timeseries", "{task}_predict"),
    benchmark: bench("timeseries", "{task}_predict")
    wildcard_constraints: task="forecast|classify"
    params: args=ts_args
    shell: "{SCIFORMER} -q predict -d timeseries -i {input.data} -o {output} --model {TS}/{wildcards.task}/model {params.args} > {log} 2>&1"


rule timeseries_report:
    input: rules.timeseries_evaluate.output.metrics,
    output:
        table=report(f"{TS}/{{task}}/report/metrics.html", category="timeseries", subcategory="{task}",
                     caption="report/timeseries_metrics.rst"),
        figures=report(f"{TS}/{{task}}/report/figures.png", category="timeseries", subcategory="{task}",
                       caption="report/timeseries_figures.rst"),
    log: logs("timeseries", "{task}_report"),
    benchmark: bench("timeseries", "{task}_report")
    wildcard_constraints: task="forecast|classify"
    params: args=ts_args
    shell: "{SCIFORMER} -q report -d timeseries -i {input} -o {TS}/{wildcards.task}/report {params.args} > {log} 2>&1"


rule timeseries:
    input:
        expand(f"{TS}/{{task}}/predictions.csv", task=TS_TASKS),
        expand(f"{TS}/{{task}}/report/figures.png", task=TS_TASKS),
