"""ONNX export and ONNX Runtime helpers shared by tools/export.py, tools/benchmark_export.py and the
tests (docs/deployment.md). Needs the ``export`` extra (onnx, onnxruntime, onnxscript)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ops.export import exportable, take_lowering_error

__all__ = ["OPSET", "add_metadata", "export_onnx", "max_difference", "ort_session", "run_onnx"]

OPSET = 20  # DeformConv needs 19; 20 is the dynamo exporter's first fully supported opset


def export_onnx(module: nn.Module, inputs: Sequence[Tensor], path: str | Path, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_batch: bool = False) -> Path:
    """Export ``module`` (put in eval mode) called on ``inputs`` to ``path`` with torch's dynamo exporter,
    in export mode (static-shape paths, ops lowered to standard operators: ops/export.py), and check the
    file with ``onnx.checker``. ``dynamic_batch`` makes dim 0 of every input symbolic."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    dynamic_shapes = None
    if dynamic_batch:
        # torch.export specialises a size of 1, so the example batch is at least 2 (the graph takes any).
        inputs = [x.expand(2, *x.shape[1:]).contiguous() if x.shape[0] == 1 else x for x in inputs]
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: batch} for _ in inputs)
    take_lowering_error()
    with exportable(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and treespec chatter
        try:
            torch.onnx.export(module, tuple(inputs), str(path), input_names=list(input_names),
                              output_names=list(output_names), opset_version=OPSET, dynamo=True,
                              dynamic_shapes=dynamic_shapes, external_data=_needs_external_data(module),
                              verbose=False)
        except Exception as err:
            lowering_error = take_lowering_error()  # the root cause, hidden behind the exporter's retries
            if lowering_error is not None:
                raise lowering_error from err
            raise
    onnx.checker.check_model(str(path), full_check=True)
    return path


def add_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    """Store ``metadata`` in the ONNX file's ``metadata_props`` (what a runtime-only caller needs to know,
    e.g. the image normalisation; ONNX Runtime shows it as ``get_modelmeta().custom_metadata_map``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # weights stay where they are
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **metadata})
    onnx.save(model, str(path))


def _needs_external_data(module: nn.Module) -> bool:
    """Weights past protobuf's 2 GiB file limit go to a ``.data`` file next to the model; smaller ones stay inside."""
    size = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    return size > 1.8 * 2**30


def ort_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session on ``path`` (``threads`` intra-op threads; None: ORT's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The session's outputs, in order, for numpy ``inputs`` by input name."""
    return session.run(None, dict(inputs))


def max_difference(expected: Sequence[Tensor], actual: Sequence[np.ndarray]) -> float:
    """The largest absolute difference over paired outputs (NaN or a shape mismatch count as infinite)."""
    worst = 0.0
    for want, got in zip(expected, actual, strict=True):
        want = want.detach().float().cpu().numpy()
        if want.shape != got.shape:
            return float("inf")
        if want.size:
            diff = np.abs(want.astype(np.float64) - got.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if not np.isnan(diff).any() else float("inf"))
    return worst
