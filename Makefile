# Two commands on a fresh machine:  `make run` (default pipeline on embedded data)  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
CORES ?= 2

.PHONY: setup run test test-fast doctor pretrain bench-molecules bench-timeseries bench-spectra freeze clean

setup:                       ## create .venv with every design-card package (idempotent)
	bash env/install.sh

run: setup                   ## every domain's default pipeline on embedded data: prepare -> train -> evaluate -> predict -> report
	$(BIN)/snakemake -c$(CORES) all
	$(BIN)/snakemake all --report results/report.html

test: setup                  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest -n $(CORES) --durations=15

test-fast: setup
	$(BIN)/python -m pytest -n $(CORES) -m "not slow"

doctor: setup
	$(BIN)/sciformer doctor

pretrain: setup              ## reproduce the committed encoder checkpoint data/molecules/pretrained
	$(BIN)/snakemake -c$(CORES) results/molecules/pretrain/run.json --config 'molecules={"config": "", "set": [], "pretrained": "", "predict_input": "data/molecules/new_molecules.csv"}'
	rm -rf data/molecules/pretrained && cp -r results/molecules/pretrain data/molecules/pretrained

bench-molecules: setup       ## FreeSolv (5 scaffold splits) + solubility: model vs baselines (vs chemprop if installed)
	$(BIN)/python benchmarks/molecules.py --chemprop --commit

bench-timeseries: setup      ## ETTh1 (../shared/data or --etth1) + vic_elec + UEA classification, with neuralforecast
	$(BIN)/python benchmarks/timeseries.py --neuralforecast --commit

bench-spectra: setup         ## lifetime (simulated + OOD IRFs) vs MLE/LSQ/phasor/midpoint/flimlib; NIR vs PLS
	$(BIN)/python benchmarks/spectra.py --commit

freeze:                      ## regenerate the pins after a deliberate upgrade
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' > env/constraints.txt

clean:
	rm -rf results .snakemake
