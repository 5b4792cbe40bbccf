#!/usr/bin/env python
"""ONNX Runtime (CPU) against eager PyTorch (CPU) on the exported models, in one run (docs/deployment.md).

    python tools/benchmark_export.py                          # InternImage-T at 224x224 and the tiny BEV model
    python tools/benchmark_export.py --case internimage_t --threads 2 --repeats 20

Both models have random weights (speed does not depend on them) and are exported with tools/export.py's
helpers; each case times batch-1 inference of both runtimes in interleaved rounds (tools/_timing.py),
with the same number of threads, and prints the medians and the ratio PyTorch / ONNX Runtime (> 1: ONNX
Runtime is faster). The tiny BEV model runs its full two-frame graph (history BEV as input).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _onnx_common import export_onnx, ort_session
from _timing import median_seconds_interleaved

CASES = ("internimage_t", "bev_tiny")
BEV_CONFIG = "configs/bev/bevformer_v2_tiny_synthetic.py"


def _case(name: str):
    """(module, example inputs, input names, output names) of a case."""
    if name == "internimage_t":
        from backbones import create_model

        torch.manual_seed(0)
        return create_model("internimage_t").eval(), [torch.randn(1, 3, 224, 224)], ["image"], ["logits"]
    from _export_graphs import build, graph_and_inputs

    torch.manual_seed(0)
    model, cfg = build(BEV_CONFIG, "random")
    return graph_and_inputs(model, cfg, "model", 1, None, None)


def run_case(name: str, threads: int, repeats: int, warmup: int, folder: Path) -> tuple[float, float]:
    """Median seconds per batch-1 call of (eager PyTorch, ONNX Runtime)."""
    module, inputs, input_names, output_names = _case(name)
    path = export_onnx(module, inputs, folder / f"{name}.onnx", input_names, output_names)
    session = ort_session(path, threads=threads)
    feed = {n: x.numpy() for n, x in zip(input_names, inputs)}

    def eager() -> None:
        with torch.inference_mode():
            module(*inputs)

    def onnx_runtime() -> None:
        session.run(None, feed)

    return tuple(median_seconds_interleaved([eager, onnx_runtime], torch.device("cpu"), repeats, warmup))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads of both runtimes (default: torch's)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"batch 1, CPU, {args.threads} threads, median of {args.repeats} interleaved rounds")
    print(f"{'case':<16} {'PyTorch eager ms':>17} {'ONNX Runtime ms':>16} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.case:
            eager, ort = run_case(name, args.threads, args.repeats, args.warmup, Path(folder))
            print(f"{name:<16} {eager * 1e3:>17.1f} {ort * 1e3:>16.1f} {eager / ort:>6.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    from _cli import run_tool

    run_tool(main, "benchmark_export.py")
