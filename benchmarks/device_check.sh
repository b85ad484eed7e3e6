#!/bin/bash
# One prepared run for a lent GPU machine (the `device` tool): the kernel benchmark, then the molecules
# model end to end on the GPU (whole `sciformer predict` and `train` + `evaluate` commands, timed).
#
# Prepare here (CPU), in the repository root, after `python -m benchmarks.molecules` has written its
# FreeSolv split-0 model:
#   printf '/.gpu/\n/.whl/\n' >> .git/info/exclude
#   B=results/molecules/bench/freesolv-scaffold_balanced-0; mkdir -p .gpu
#   cp -r $B/model $B/prepared results/molecules/bench/throughput_5000.csv .gpu/
#   python -m core.cli -q predict -d molecules -i .gpu/throughput_5000.csv -o .gpu/cpu_reference.csv \
#       --model .gpu/model --device cpu
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       fla-core==0.6.0 rdkit==2026.9.1 jsonschema==4.26.0 jsonschema-specifications referencing rpds-py
# Then: device run `bash benchmarks/device_check.sh` with carry [".gpu", ".whl"] (4.7 min on an H200,
# start and transfers excluded). Files come back under $OUT: kernels.json, kernels.log, gpu_metrics.json.
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
nvidia-smi -L 2>/dev/null
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available())"
TIME=""; [ -x /usr/bin/time ] && TIME="/usr/bin/time -v"
timed() { local s; s=$(date +%s.%N); "$@"; local rc=$?; $PY -c "print('wall %.2f s rc=$rc' % ($(date +%s.%N) - $s))"; }

echo "== kernels $(date +%T)"
timeout "${KERNELS_TIMEOUT:-300}" $PY -m benchmarks.kernels --commit ${KERNELS_ARGS:-} 2>&1 | tee "$OUT/kernels.log"
cp results/kernels/benchmark.json "$OUT/kernels.json" 2>/dev/null

N=${N:-5000}
head -n $((N + 1)) .gpu/throughput_5000.csv > /tmp/in.csv
for j in 1 8; do  # -j 8: featurization in 8 worker processes, each with its own copy of the model on the GPU
  echo "== predict $N molecules -j $j $(date +%T)"
  timed $TIME timeout 120 $PY -m core.cli -q predict -d molecules -i /tmp/in.csv -o /tmp/out_j$j.csv \
    --model .gpu/model -j $j 2> /tmp/time_j$j.txt
  grep -E "Elapsed|Maximum resident" /tmp/time_j$j.txt
done
$PY - <<'P'
import pandas as pd
gpu, cpu = pd.read_csv("/tmp/out_j1.csv"), pd.read_csv(".gpu/cpu_reference.csv")
both = gpu["expt"].notna() & cpu["expt"].notna()
print("GPU vs CPU predictions: max |difference|", float((gpu["expt"][both] - cpu["expt"][both]).abs().max()),
      "over", int(both.sum()), "rows")
P

SETS="--set data.dataset=freesolv --set data.split=scaffold_balanced --set data.replicate=0"
echo "== train $(date +%T)"
timed $TIME timeout "${TRAIN_TIMEOUT:-200}" $PY -m core.cli -q train -d molecules $SETS -i .gpu/prepared \
  -o /tmp/gpu_model --init data/molecules/pretrained 2> /tmp/time_train.txt
grep -E "Elapsed|Maximum resident" /tmp/time_train.txt; grep -v -E "^\s" /tmp/time_train.txt | tail -5
echo "== evaluate $(date +%T)"
timeout 120 $PY -m core.cli -q evaluate -d molecules $SETS -i .gpu/prepared --model /tmp/gpu_model \
  -o "$OUT/gpu_metrics.json"
echo "== done $(date +%T)"
