# sciformer: one reproducible pipeline per domain on a shared transformer core.
#   snakemake -c2 molecules        # one domain: every run's prepare -> train -> evaluate -> predict -> report
#   snakemake -c2 all              # every domain
#   snakemake all --report report.html   # HTML report with the figures and metrics tables
# Settings: workflows/config.yaml (validated against workflows/schemas/config.schema.yaml); profiles/.
# The rules are generic over {domain}/{run} (workflows/rules.smk); a new domain is one entry in the config.

if "domains" not in config:  # a --configfile (e.g. profiles/test's) replaces the default one, never merges into it
    configfile: "workflows/config.yaml"


include: "workflows/common.smk"
include: "workflows/rules.smk"
include: "workflows/sharded.smk"


rule all:
    default_target: True
    input: [t for domain in config["domains"] for t in targets(domain)],
