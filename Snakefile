# sciformer: one reproducible pipeline per domain on a shared transformer core.
#   snakemake -c2 molecules        # one domain (prepare -> pretrain -> train -> evaluate -> predict -> report)
#   snakemake -c2 all              # every domain
#   snakemake --report report.html # HTML report with plots and metrics tables
# Settings: workflows/config.yaml (validated against workflows/schemas/config.schema.yaml); profiles/.

configfile: "workflows/config.yaml"


include: "workflows/common.smk"
include: "workflows/molecules.smk"
include: "workflows/spectra.smk"
include: "workflows/timeseries.smk"


rule all:
    default_target: True
    input:
        rules.molecules.input,
        rules.spectra.input,
        rules.timeseries.input,
