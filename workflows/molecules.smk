# Molecules: prepare -> pretrain (masked tokens; or the committed checkpoint) -> train (fine-tune, ensemble)
# -> evaluate (model vs baselines, same split) -> predict (new dataset) -> report.
MOL = "results/molecules"
MOL_ARGS = domain_args("molecules")
MOL_INIT = config["molecules"]["pretrained"] or f"{MOL}/pretrain"


rule molecules_prepare:
    output:
        data=f"{MOL}/prepared/molecules.csv",
        resolved=f"{MOL}/prepared/resolved_config.json",
    log: logs("molecules", "prepare"),
    benchmark: bench("molecules", "prepare")
    params: args=MOL_ARGS
    shell: "{SCIFORMER} -q prepare -d molecules -o {MOL}/prepared {params.args} > {log} 2>&1"


rule molecules_pretrain:
    input: rules.molecules_prepare.output.resolved,
    output: f"{MOL}/pretrain/run.json",
    log: logs("molecules", "pretrain"),
    benchmark: bench("molecules", "pretrain")
    params: args=MOL_ARGS
    shell: "{SCIFORMER} -q train -d molecules --stage pretrain -i {MOL}/prepared -o {MOL}/pretrain {params.args} > {log} 2>&1"


rule molecules_train:
    input:
        prepared=rules.molecules_prepare.output.resolved,
        init=f"{MOL_INIT}/run.json",
    output: f"{MOL}/model/run.json",
    log: logs("molecules", "train"),
    benchmark: bench("molecules", "train")
    threads: 2  # ensemble members train in parallel processes, one torch thread each
    params: args=MOL_ARGS, init=MOL_INIT
    shell: "{SCIFORMER} -q train -d molecules -i {MOL}/prepared --init {params.init} -o {MOL}/model -j {threads} {params.args} > {log} 2>&1"


rule molecules_evaluate:
    input:
        prepared=rules.molecules_prepare.output.resolved,
        model=rules.molecules_train.output,
    output:
        metrics=f"{MOL}/metrics.json",
        predictions=f"{MOL}/test_predictions.csv",
    log: logs("molecules", "evaluate"),
    benchmark: bench("molecules", "evaluate")
    params: args=MOL_ARGS
    shell: "{SCIFORMER} -q evaluate -d molecules -i {MOL}/prepared --model {MOL}/model -o {output.metrics} --predictions {output.predictions} {params.args} > {log} 2>&1"


rule molecules_predict:
    input:
        data=config["molecules"]["predict_input"],
        model=rules.molecules_train.output,
    output: f"{MOL}/predictions.csv",
    log: logs("molecules", "predict"),
    benchmark: bench("molecules", "predict")
    params: args=MOL_ARGS
    shell: "{SCIFORMER} -q predict -d molecules -i {input.data} -o {output} --model {MOL}/model {params.args} > {log} 2>&1"


rule molecules_report:
    input: rules.molecules_evaluate.output.metrics,
    output:
        table=report(f"{MOL}/report/metrics.html", category="molecules", caption="report/molecules_metrics.rst"),
        parity=report(f"{MOL}/report/parity.png", category="molecules", caption="report/molecules_parity.rst"),
    log: logs("molecules", "report"),
    benchmark: bench("molecules", "report")
    params: args=MOL_ARGS
    shell: "{SCIFORMER} -q report -d molecules -i {input} -o {MOL}/report {params.args} > {log} 2>&1"


rule molecules:
    input:
        rules.molecules_predict.output,
        rules.molecules_report.output,
