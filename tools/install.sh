#!/usr/bin/env bash
# Creates (or updates) a virtual environment with the project installed in editable mode.
#   bash tools/install.sh [VENV_DIR]      (default: .venv in the repository root)
# torch is pinned through constraints.txt. nuscenes-devkit goes in with --no-deps because its
# declared pins (numpy<2, Shapely~=2.0.3) are stale; its real runtime needs are in pyproject.toml.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$root/constraints.txt")
"${pip[@]}" "torch==2.13.0" "setuptools>=77.0.3,<81" wheel
"${pip[@]}" -e "$root[dev,export]"  # export: onnx, onnxruntime, onnxscript (ONNX export and its tests)
"${pip[@]}" --no-deps "nuscenes-devkit==1.2.0"
# openlanev2 is only the OLS test oracle; its pins (numpy<1.24, scipy==1.8, ortools==9.2) fail on 3.11.
"${pip[@]}" --no-deps "openlanev2==2.1.0" "similaritymeasures==1.5.0" "iso3166==2.1.1"
"$venv/bin/python" -c "import torch, ops, nuscenes; print('installed: torch', torch.__version__, '| venv', '$venv')"
