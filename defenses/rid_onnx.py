"""RID on onnxruntime with int8 dynamic quantisation: the fastest CPU path measured by
benchmarks/rid_speed.py on this project's 2-core machine (released size, 512 px:
2.05 s vs torch int8 2.27 s vs torch fp32 3.51 s, all within 1/255 of the fp32
network's perturbation; docs/rid.md). The network is exported once per checkpoint and
budget (explicit attention, dynamic batch axis), its MatMul weights quantised to int8
per tensor by onnxruntime.quantization.quantize_dynamic, and the file cached as the
artifact ``rid_onnx``; protection then runs an InferenceSession wrapped so that
rid_net.protect() treats it like the torch network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bench.errors import BenchError

ONNX_FILE = "rid_int8.onnx"
OPSET = 17


class OrtRID(nn.Module):
    """An InferenceSession behind the RIDNet interface protect() uses (eps_255,
    input_size, forward on a [-1, 1] batch)."""

    def __init__(self, onnx_path: Path, eps_255: float, input_size: int, threads: int):
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.eps_255, self.input_size = float(eps_255), int(input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.float().contiguous().numpy()})[0])


def export_int8(net: nn.Module, folder: Path) -> Path:
    """fp32 ONNX export (batch axis dynamic), then int8 dynamic quantisation of MatMul/Gemm."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "rid_fp32.onnx"
    net.eval().set_attention("math")  # plain ops: what ONNX expresses without SDPA
    x = torch.zeros(1, net.config["in_channels"], net.input_size, net.input_size)
    with torch.no_grad():
        torch.onnx.export(net, (x,), str(fp32), opset_version=OPSET, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    net.set_attention("sdpa")
    out = folder / ONNX_FILE
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    for f in folder.glob("rid_fp32.onnx*"):  # the fp32 graph (and any external-data file) is not kept
        f.unlink()
    return out


def load(net_fp32: nn.Module, key_inputs: dict, ctx, threads: int) -> OrtRID:
    """The cached int8 ONNX network for this checkpoint + budget + architecture."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise BenchError("defense.rid.engine=onnxruntime-int8 needs onnxruntime (pip install onnxruntime); "
                         "or set defense.rid.engine=torch-int8") from None
    inputs = {**key_inputs, "opset": OPSET, "quant": "dynamic int8 MatMul/Gemm per-tensor", "v": 1}
    art = ctx.cached("rid_onnx", inputs, lambda tmp: {"file": export_int8(net_fp32, tmp).name})
    return OrtRID(art.path / ONNX_FILE, net_fp32.eps_255, net_fp32.input_size, threads)
