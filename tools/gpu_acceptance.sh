#!/usr/bin/env bash
# Every GPU check of the ops, backbone and BEV work in one go, one log per stage, so that a session
# with a GPU spends its device time measuring rather than typing.
#
#   bash tools/gpu_acceptance.sh OUT_DIR [STAGE ...]
#
# Stages (default: tests ops backbone compiled model):
#   tests     CUDA kernels vs the float64 reference in every dtype (pytest -m gpu)
#   ops       tools/benchmark_ops.py: op times vs the reference, official figures and targets, and the
#             host overhead per call (registered op vs eager path)
#   backbone  tools/benchmark_backbone.py: InternImage throughput, latency, training speed and memory,
#             each with a profile (kernel time per category, GPU busy vs wall time)
#   compiled  the throughput and training cases under torch.compile (default and CUDA graphs),
#             profiled; six compilations, so run it as its own call where calls are time-limited
#   model     tools/benchmark_model.py: BEVFormer v2 InternImage-B, 6 x 640x1600, bf16, with_cp, profiled
#   train     the demo for 20 minutes with hybrid queries, then 20 minutes without (not by default)
# Set PYTHON to choose the interpreter (default: .venv/bin/python if present, else python).
set -uo pipefail
out=${1:?usage: bash tools/gpu_acceptance.sh OUT_DIR [tests|ops|backbone|compiled|model|train ...]}
shift
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(tests ops backbone compiled model)
py=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
mkdir -p "$out"

run() {
  local name=$1
  shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.log"
  echo "$name: exit ${PIPESTATUS[0]}" | tee -a "$out/summary.txt"
}

for stage in "${stages[@]}"; do
  case $stage in
    tests) run gpu_tests "$py" -m pytest -m gpu tests -q ;;
    ops)
      run benchmark_ops "$py" tools/benchmark_ops.py
      run host_overhead "$py" tools/benchmark_ops.py --host-overhead ;;
    backbone)
      run benchmark_backbone "$py" tools/benchmark_backbone.py --profile 5 ;;
    compiled)
      run benchmark_backbone_compiled "$py" tools/benchmark_backbone.py --case t_throughput t_train b_train \
        --compile default reduce-overhead --profile 5 ;;
    model) run benchmark_model "$py" tools/benchmark_model.py configs/bev/bevformer_v2_internimage_b_nus.py \
      --resolution 640x1600 --amp bfloat16 --with-cp --profile 3 ;;
    train)
      run train_hybrid "$py" tools/demo.py --out "$out/demo_hybrid" --max-minutes 20
      run train_plain "$py" tools/demo.py --out "$out/demo_plain" --max-minutes 20 \
        --cfg-options model.hybrid_queries=0 ;;
    *) echo "unknown stage '$stage' (tests, ops, backbone, compiled, model, train)" >&2; exit 2 ;;
  esac
done
