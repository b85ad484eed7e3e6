# Two commands on a fresh machine:  `make run` (default pipelines on embedded data)  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
CORES ?= 2

.PHONY: help setup run test test-slurm test-fast lint doctor pretrain bench-molecules bench-timeseries bench-spectra bench-audio freeze clean

help:                        ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:[^#]*## /\t/' | awk -F'\t' '{printf "  make %-18s %s\n", $$1, $$2}'

setup:                       ## create .venv with every domain's packages (idempotent)
	bash env/install.sh

run: setup                   ## every domain's default pipeline on embedded data + one HTML report (results/)
	$(BIN)/snakemake -c$(CORES) all
	$(BIN)/snakemake all --report results/report.html

test: setup                  ## the whole test suite but the SLURM run (what CI runs, after `make lint`)
	$(BIN)/python -m pytest -n $(CORES) -m "not slurm" -rs --durations=15

test-slurm: setup            ## two test pipelines as sbatch jobs on a one-node SLURM cluster vs a local run (root: starts env/slurm-local.sh)
	bash env/slurm-local.sh start
	$(BIN)/python -m pytest -m slurm -rs --durations=5 tests/test_slurm.py

test-fast: setup             ## the suite without the end-to-end runs (marked slow)
	$(BIN)/python -m pytest -n $(CORES) -m "not slow"

lint: setup                  ## ruff (pyflakes, pycodestyle, import order, bugbear) and snakemake --lint
	$(BIN)/python -m ruff check .
	$(BIN)/python .ci/snakemake-lint

doctor: setup                ## check every package and domain works; device, threads, Triton
	$(BIN)/sciformer doctor

pretrain: setup              ## reproduce the committed encoder data/molecules/pretrained with the workflow's pretrain stage
	$(BIN)/snakemake -c$(CORES) results/molecules/properties/stage-pretrain/run.json \
	  --config 'domains={"molecules": {"runs": {"properties": {"init": ""}}}}'
	rm -rf data/molecules/pretrained && cp -r results/molecules/properties/stage-pretrain data/molecules/pretrained

bench-molecules: setup       ## FreeSolv (5 scaffold splits), solubility, MoleculeACE Ki sets: model vs baselines vs chemprop
	$(BIN)/python -m benchmarks.molecules --chemprop --moleculeace --commit

bench-timeseries: setup      ## ETTh1 (../shared/data) + vic_elec + more sets + UEA classification, with the peers
	$(BIN)/python -m benchmarks.timeseries --neuralforecast --commit

bench-spectra: setup         ## lifetime (simulated sets) vs the fitters; NIR vs PLS
	$(BIN)/python -m benchmarks.spectra --commit

bench-audio: setup           ## enhancement (8 and 16 kHz) vs Wiener, spectral subtraction, noisereduce; voice ID vs MFCC+LR, CNN
	$(BIN)/python -m benchmarks.audio --sample-rates 8000 16000 --commit

freeze:                      ## regenerate the pins after a deliberate upgrade
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' > env/constraints.txt

clean:                       ## remove results/ and Snakemake's state
	rm -rf results .snakemake
