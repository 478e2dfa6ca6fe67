"""dlib's face-recognition ResNet ("dlib_face_recognition_resnet_model_v1") in PyTorch.

Why: DLADiff's identity layer (seed 004, Eq. 10-11) runs PGD through identity encoders,
and the only face-recognition weights available offline ship as dlib's binary .dat in
the pip package face_recognition_models. dlib computes the descriptors but has no
gradients, so this module parses the .dat and rebuilds the same network in torch.

Format (read from davisking/dlib, dlib/serialize.h + dlib/dnn/{core,layers,input,tensor}.h):
- integers: one control byte (low nibble = byte count, 0x80 = negative) + little-endian
  magnitude bytes; bool: the character '1'/'0'; std::string: integer length + bytes;
  float/double: integer mantissa (int64) then integer exponent (int16), value = m * 2**e.
- tensor: int version (1: floats in the above encoding, 2: raw float32 little-endian),
  then num_samples, k, nr, nc; alias_tensor: int version 1 + the four dims.
- add_loss_layer: version, loss details, subnet. add_layer: version, subnet, details,
  3 bools, x_grad, cached_output, params_grad (v2); the add_layer on the input layer
  (v3): input layer, details, 3 bools, x_grad, cached_output, grad_final,
  sample_expansion_factor. add_tag_layer / add_skip_layer: version, subnet.
- The file holds the inference network of dlib's examples/dnn_face_recognition_ex.cpp
  (anet_type: batch norm already folded into affine_ layers).

Network (anet_type): input_rgb_image_sized<150> ((pixel - mean) / 256, RGB planes),
con 7x7/2 32 (no padding) -> affine -> relu -> max_pool 3x3/2 -> residual levels
32 x3, 64 (down + x3), 128 (down + x2), 256 (down + x2), 256 (down) -> global average
-> fc_no_bias 128. A residual block is relu(add_prev(x, affine(con3x3(relu(affine(
con3x3/s(x))))))); a down block's shortcut is avg_pool 2x2/2 of x. dlib's add_prev
sums tensors of different shapes by zero-padding the smaller one at the end of each
axis (layers.h add_prev_::forward: output size = max of each dim; tt::add).

The descriptor is the raw fc output (not L2-normalised), exactly what dlib's
face_recognition_model_v1.compute_face_descriptor returns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError

CHIP_SIZE = 150  # input_rgb_image_sized<150> (dnn_face_recognition_ex.cpp)
CHIP_PADDING = 0.25  # dlib python face_recognition_model_v1 default / get_face_chip default
# Defaults from the model file itself (input_rgb_image_sized avg_red/green/blue); they
# equal dlib input.h's constructor defaults 122.782, 117.001, 104.298.
RGB_MEAN_DEFAULT = (122.782, 117.001, 104.298)
RGB_SCALE = 256.0  # input.h: (pixel - avg) / 256.0

_LOCK = threading.RLock()
_CACHE: dict[str, Any] = {}


# ------------------------------------------------------------------ dlib stream reader
class _Reader:
    """Sequential reader of dlib's serialize() encoding (dlib/serialize.h)."""

    def __init__(self, data: bytes):
        self.b = data
        self.i = 0

    def _take(self, n: int) -> bytes:
        if self.i + n > len(self.b):
            raise ValueError(f"unexpected end of file at byte {self.i}")
        out = self.b[self.i : self.i + n]
        self.i += n
        return out

    def int(self) -> int:
        ctrl = self._take(1)[0]
        size, neg = ctrl & 0x0F, bool(ctrl & 0x80)
        if size > 8:
            raise ValueError(f"bad integer control byte 0x{ctrl:02x} at byte {self.i - 1}")
        val = int.from_bytes(self._take(size), "little") if size else 0
        return -val if neg else val

    def bool(self) -> bool:
        c = self._take(1)
        if c not in (b"0", b"1"):
            raise ValueError(f"bad bool {c!r} at byte {self.i - 1}")
        return c == b"1"

    def real(self) -> float:
        # float_details: mantissa * 2**exponent; dlib marks inf/nan with reserved
        # exponents (32000 +inf, 32001 -inf, 32002 nan) - irrelevant for weights but handled.
        m, e = self.int(), self.int()
        if e >= 32000:
            return {32000: float("inf"), 32001: float("-inf")}.get(e, float("nan"))
        return float(m) * 2.0**e

    def string(self) -> str:
        n = self.int()
        return self._take(n).decode("latin-1")

    def expect_str(self, *names: str) -> str:
        at = self.i
        s = self.string()
        if s not in names:
            raise ValueError(f"expected {' or '.join(names)!r} at byte {at}, found {s!r}")
        return s

    def tensor(self) -> np.ndarray:
        version = self.int()
        dims = tuple(self.int() for _ in range(4))
        count = int(np.prod(dims))
        if version == 2:  # raw little-endian float32 (tensor.h)
            arr = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        elif version == 1:
            arr = np.array([self.real() for _ in range(count)], dtype=np.float32)
        else:
            raise ValueError(f"unknown tensor version {version} at byte {self.i}")
        return arr.reshape(dims)

    def alias(self) -> tuple[int, int, int, int]:
        if self.int() != 1:
            raise ValueError(f"unknown alias_tensor version at byte {self.i}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


# ------------------------------------------------------------------ architecture
@dataclass
class _Node:
    """One wrapper of the dlib type, outermost first (as the C++ template reads)."""

    kind: str  # con | affine | relu | max_pool | avg_pool | gap | fc | add_prev | tag | skip
    args: tuple = ()
    params: dict = field(default_factory=dict)


def _block(n: int, stride: int) -> list[_Node]:
    # block<N,affine,stride,S> = affine<con<N,3,3,1,1,relu<affine<con<N,3,3,stride,stride,S>>>>>
    return [_Node("affine"), _Node("con", (n, 3, 1)), _Node("relu"), _Node("affine"), _Node("con", (n, 3, stride))]


def _ares(n: int) -> list[_Node]:
    # relu<add_prev1<block<N,affine,1,tag1<S>>>>
    return [_Node("relu"), _Node("add_prev", (1,))] + _block(n, 1) + [_Node("tag", (1,))]


def _ares_down(n: int) -> list[_Node]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<S>>>>>>>
    return (
        [_Node("relu"), _Node("add_prev", (2,)), _Node("avg_pool", (2, 2)), _Node("skip", (1,)), _Node("tag", (2,))]
        + _block(n, 2)
        + [_Node("tag", (1,))]
    )


def _anet() -> list[_Node]:
    """anet_type of dnn_face_recognition_ex.cpp below the loss layer, outermost first."""
    nodes = [_Node("fc", (128,)), _Node("gap")]
    nodes += _ares_down(256)  # alevel0
    nodes += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    nodes += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    nodes += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # alevel3
    nodes += _ares(32) + _ares(32) + _ares(32)  # alevel4
    nodes += [_Node("max_pool", (3, 2)), _Node("relu"), _Node("affine"), _Node("con", (32, 7, 2))]
    return nodes


_LAYER_NAMES = {
    "con": ("con_4",),
    "affine": ("affine_",),
    "relu": ("relu_",),
    "max_pool": ("max_pool_2",),
    "avg_pool": ("avg_pool_2",),
    "gap": ("avg_pool_2",),
    "fc": ("fc_2",),
    "add_prev": ("add_prev_",),
}


def _read_details(r: _Reader, node: _Node) -> None:
    """Layer details (layers.h serialize functions); checks shapes against the type."""
    r.expect_str(*_LAYER_NAMES[node.kind])
    if node.kind == "con":
        params = r.tensor()
        nf, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
        filt, bias = r.alias(), r.alias()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.real()
        want_n, want_k, want_s = node.args
        if (nf, nr, nc, sy, sx) != (want_n, want_k, want_k, want_s, want_s):
            raise ValueError(f"con mismatch: file has {(nf, nr, nc, sy, sx)}, expected {node.args}")
        nw = int(np.prod(filt))
        flat = params.reshape(-1)
        node.params = {
            "weight": flat[:nw].reshape(filt),  # (out, in, nr, nc), cross-correlation like torch
            "bias": flat[nw : nw + int(np.prod(bias))].reshape(-1),
            "padding": (py, px),
            "stride": (sy, sx),
        }
    elif node.kind == "affine":
        params = r.tensor().reshape(-1)
        g, b = r.alias(), r.alias()
        mode = r.int()
        if mode != 0:  # CONV_MODE = 0 (per-channel), FC_MODE = 1
            raise ValueError(f"affine_ in FC mode ({mode}) where a conv affine was expected")
        ng = int(np.prod(g))
        node.params = {"gamma": params[:ng].copy(), "beta": params[ng : ng + int(np.prod(b))].copy()}
    elif node.kind in ("max_pool", "avg_pool", "gap"):
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        if node.kind == "gap":
            if (nr, nc, sy, sx, py, px) != (0, 0, 1, 1, 0, 0):
                raise ValueError(f"avg_pool_everything mismatch: {(nr, nc, sy, sx, py, px)}")
        elif (nr, nc, sy, sx) != (node.args[0], node.args[0], node.args[1], node.args[1]):
            raise ValueError(f"{node.kind} mismatch: file has {(nr, nc, sy, sx)}, expected {node.args}")
        node.params = {"kernel": (nr, nc), "stride": (sy, sx), "padding": (py, px)}
    elif node.kind == "fc":
        n_out, n_in = r.int(), r.int()
        params = r.tensor().reshape(-1)
        r.alias(), r.alias()  # weights (n_in, n_out), biases (empty for fc_no_bias)
        bias_mode = r.int()  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        for _ in range(4):
            r.real()
        if n_out != node.args[0] or bias_mode != 1:
            raise ValueError(f"fc mismatch: outputs {n_out}, bias_mode {bias_mode}")
        node.params = {"weight": params[: n_in * n_out].reshape(n_in, n_out)}  # out = x @ W


def _skip_layer_state(r: _Reader, input_layer: bool) -> None:
    """add_layer bookkeeping after the details: flags and (empty) cached tensors."""
    for _ in range(3):
        r.bool()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    r.tensor()  # params_grad (v2) or grad_final (input-level v3)
    if input_layer:
        r.int()  # _sample_expansion_factor


def parse_dat(path: str | Path) -> tuple[list[_Node], tuple[float, float, float]]:
    """Parse the .dat into the node list (outermost first) and the input RGB means."""
    r = _Reader(Path(path).read_bytes())
    if r.int() != 1:
        raise ValueError("unknown add_loss_layer version")
    r.expect_str("loss_metric_2")
    r.real(), r.real()  # margin, distance threshold (training only)
    nodes = _anet()
    for node in nodes:  # versions of every wrapper, outermost first
        v = r.int()
        last = node is nodes[-1]
        want = (3,) if last else ((1,) if node.kind in ("tag", "skip") else (2,))
        if v not in want:
            raise ValueError(f"wrapper {node.kind}: version {v}, expected {want} (byte {r.i})")
    r.expect_str("input_rgb_image_sized")
    mean = (r.real(), r.real(), r.real())
    nr, nc = r.int(), r.int()
    if (nr, nc) != (CHIP_SIZE, CHIP_SIZE):
        raise ValueError(f"input size {nr}x{nc}, expected {CHIP_SIZE}")
    for node in reversed(nodes):  # details are written innermost first, on the way back up
        if node.kind in ("tag", "skip"):
            continue
        _read_details(r, node)
        _skip_layer_state(r, input_layer=node is nodes[-1])
    if r.i != len(r.b):
        raise ValueError(f"{len(r.b) - r.i} trailing bytes after the network")
    return nodes, mean


# ------------------------------------------------------------------ torch model
def _build_module(nodes: list[_Node], mean: tuple[float, float, float]):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class DlibFaceResNet(nn.Module):
        """(N, 3, 150, 150) RGB in [0, 255] -> (N, 128) raw dlib descriptors.

        Input is float RGB in the 0-255 pixel range of an aligned chip (dlib.get_face_chip
        layout); inputs need not be integers, so gradients w.r.t. pixels are meaningful.
        """

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.ops: list[tuple] = []  # forward order (innermost first)
            convs, n_affine = nn.ModuleList(), 0
            for node in reversed(nodes):
                p = node.params
                if node.kind == "con":
                    w = torch.from_numpy(p["weight"].copy())
                    conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=p["stride"], padding=p["padding"])
                    with torch.no_grad():
                        conv.weight.copy_(w)
                        conv.bias.copy_(torch.from_numpy(p["bias"].copy()))
                    self.ops.append(("con", len(convs)))
                    convs.append(conv)
                elif node.kind == "affine":
                    g = torch.from_numpy(p["gamma"]).view(1, -1, 1, 1)
                    b = torch.from_numpy(p["beta"]).view(1, -1, 1, 1)
                    self.register_buffer(f"aff{n_affine}_g", g)
                    self.register_buffer(f"aff{n_affine}_b", b)
                    self.ops.append(("affine", n_affine))
                    n_affine += 1
                elif node.kind == "fc":
                    self.fc = nn.Linear(p["weight"].shape[0], p["weight"].shape[1], bias=False)
                    with torch.no_grad():
                        self.fc.weight.copy_(torch.from_numpy(p["weight"].T.copy()))
                    self.ops.append(("fc",))
                elif node.kind in ("max_pool", "avg_pool"):
                    self.ops.append((node.kind, p["kernel"], p["stride"], p["padding"]))
                elif node.kind in ("relu", "gap"):
                    self.ops.append((node.kind,))
                else:  # tag / skip / add_prev carry the tag id
                    self.ops.append((node.kind, node.args[0]))
            self.convs = convs
            for prm in self.parameters():
                prm.requires_grad_(False)  # a frozen encoder; gradients flow to the input only

        @staticmethod
        def _padded_add(a, b):
            # dlib add_prev_: output dims = max of each dim, missing entries count as 0.
            if a.shape == b.shape:
                return a + b
            shape = [max(x, y) for x, y in zip(a.shape, b.shape)]

            def pad(t):
                # F.pad takes (last-dim left, right, ...) pairs; pad only at the end.
                amounts = []
                for dim in range(t.dim() - 1, 0, -1):
                    amounts += [0, shape[dim] - t.shape[dim]]
                return F.pad(t, amounts)

            return pad(a) + pad(b)

        def forward(self, x):
            if x.dim() != 4 or x.shape[1] != 3:
                raise ValueError(f"expected (N, 3, H, W) RGB, got {tuple(x.shape)}")
            x = (x - self.mean) / RGB_SCALE
            tags: dict[int, Any] = {}
            for op in self.ops:
                kind = op[0]
                if kind == "con":
                    x = self.convs[op[1]](x)
                elif kind == "affine":
                    x = x * getattr(self, f"aff{op[1]}_g") + getattr(self, f"aff{op[1]}_b")
                elif kind == "relu":
                    x = F.relu(x)
                elif kind == "max_pool":
                    x = F.max_pool2d(x, op[1], op[2], op[3])
                elif kind == "avg_pool":
                    # padding is 0 here, so count_include_pad does not matter
                    x = F.avg_pool2d(x, op[1], op[2], op[3])
                elif kind == "gap":
                    x = x.mean(dim=(2, 3))
                elif kind == "fc":
                    x = self.fc(x.flatten(1))
                elif kind == "tag":
                    tags[op[1]] = x
                elif kind == "skip":
                    x = tags[op[1]]
                elif kind == "add_prev":
                    x = self._padded_add(x, tags[op[1]])
            return x

    return DlibFaceResNet()


def model_path() -> Path | None:
    """The .dat inside face_recognition_models (located without importing the package)."""
    from metrics.face_offline import DESCRIPTOR_MODEL, dlib_model_dir

    d = dlib_model_dir()
    return None if d is None else d / DESCRIPTOR_MODEL


def load(device: str = "cpu"):
    """The torch port with the .dat weights, cached per device; eval mode, frozen."""
    with _LOCK:
        if device in _CACHE:
            return _CACHE[device]
        path = model_path()
        if path is None:
            raise BenchError("dlib ResNet unavailable: face_recognition_models not installed (pip install face_recognition_models)")
        if not path.is_file():
            raise BenchError(f"dlib ResNet unavailable: model file missing: {path}")
        try:
            nodes, mean = parse_dat(path)
        except ValueError as exc:
            raise BenchError(f"dlib ResNet unavailable: cannot parse {path.name}: {exc}") from exc
        model = _build_module(nodes, mean).to(device).eval()
        _CACHE[device] = model
        return model


# ------------------------------------------------------------------ alignment
_DLIB_MODELS: dict[str, Any] = {}


def _dlib_tools():
    with _LOCK:
        if not _DLIB_MODELS:
            try:
                import dlib
            except Exception as exc:  # noqa: BLE001
                raise BenchError(f"dlib alignment unavailable: dlib not importable ({exc})") from exc
            from metrics.face_offline import SHAPE_PREDICTOR, dlib_model_dir

            d = dlib_model_dir()
            if d is None or not (d / SHAPE_PREDICTOR).is_file():
                raise BenchError(f"dlib alignment unavailable: {SHAPE_PREDICTOR} not found (pip install face_recognition_models)")
            _DLIB_MODELS["sp"] = dlib.shape_predictor(str(d / SHAPE_PREDICTOR))
            _DLIB_MODELS["det"] = dlib.get_frontal_face_detector()  # HOG, built into dlib
        return _DLIB_MODELS


def chip_matrix(chip_details: Any) -> np.ndarray:
    """2x3 affine mapping image (x, y) -> chip (x, y) for a dlib chip_details.

    Mirrors dlib image_transforms/interpolation.h get_mapping_to_chip: the rect's
    tl, tr, br corners rotated by `angle` about the rect centre map to chip corners
    (0, 0), (cols-1, 0), (cols-1, rows-1).
    """
    rect, ang = chip_details.rect, float(chip_details.angle)
    cx = (rect.left() + rect.right()) / 2.0
    cy = (rect.top() + rect.bottom()) / 2.0
    c, s = np.cos(ang), np.sin(ang)

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + c * dx - s * dy, cy + s * dx + c * dy

    src = np.array([rot(rect.left(), rect.top()), rot(rect.right(), rect.top()), rot(rect.right(), rect.bottom())])
    cols, rows = chip_details.cols, chip_details.rows
    dst = np.array([[0.0, 0.0], [cols - 1.0, 0.0], [cols - 1.0, rows - 1.0]])
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T  # (2, 3)


def landmarks(image_rgb_uint8: np.ndarray, box: tuple[float, float, float, float] | None = None):
    """dlib 5-point full_object_detection of the largest face (HOG detector unless box given)."""
    import dlib

    tools = _dlib_tools()
    img = np.ascontiguousarray(image_rgb_uint8, dtype=np.uint8)
    if box is None:
        dets = tools["det"](img, 1)
        if len(dets) == 0:
            return None
        rect = max(dets, key=lambda d: d.width() * d.height())
    else:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        rect = dlib.rectangle(x1, y1, max(x2, x1 + 1), max(y2, y1 + 1))
    return tools["sp"](img, rect)


def align_matrix(image_rgb_uint8: np.ndarray, box=None, size: int = CHIP_SIZE, padding: float = CHIP_PADDING):
    """(M, chip): M is the 2x3 image->chip pixel affine of dlib's face alignment, chip is
    dlib.get_face_chip's (size, size, 3) uint8 crop. None when no face is found.

    Warp differentiably with warp_affine(img, M, (size, size)) and map a chip-space
    perturbation back with warp_affine(delta, invert_affine(M), (H, W)).
    """
    import dlib

    shape = landmarks(image_rgb_uint8, box)
    if shape is None:
        return None
    img = np.ascontiguousarray(image_rgb_uint8, dtype=np.uint8)
    details = dlib.get_face_chip_details(shape, size=size, padding=padding)
    chip = np.asarray(dlib.get_face_chip(img, shape, size=size, padding=padding))
    return chip_matrix(details), chip


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine (as a 2x3)."""
    full = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def warp_affine(images, m, out_hw: tuple[int, int], antialias: bool = True):
    """Differentiable bilinear warp: out[y, x] = images at inverse(m) @ (x, y, 1).

    images: (N, C, H, W) float tensor; m: 2x3 source->output pixel affine (numpy or
    tensor, or (N, 2, 3)). Pixel centres are integer coordinates (dlib's convention),
    hence align_corners=True; outside samples are 0.

    antialias: like dlib's extract_image_chips (interpolation.h), which first walks an
    image pyramid down by halves until the remaining shrink is at most 2x, the source is
    pre-shrunk by 2**levels (torch antialiased resize, differentiable) before sampling.
    Without it, a large face shrunk to 150 px aliases and its descriptor drifts.
    """
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    oh, ow = out_hw
    mt = torch.as_tensor(np.asarray(m) if not torch.is_tensor(m) else m, dtype=images.dtype, device=images.device)
    if mt.dim() == 2:
        mt = mt.unsqueeze(0).expand(n, 2, 3)
    if antialias:
        shrink = float(1.0 / torch.sqrt(torch.det(mt[:, :, :2]).abs().max()).clamp_min(1e-8))
        levels = max(0, int(np.ceil(np.log2(shrink))) - 1) if shrink > 2 else 0
        if levels:
            f = 0.5**levels
            nh, nw = max(1, int(round(h * f))), max(1, int(round(w * f)))
            images = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
            # new pixel u = (x + 0.5) * nw / w - 0.5, so x = (u + 0.5) * w / nw - 0.5
            sx, sy = w / nw, h / nh
            back = torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=images.dtype, device=images.device)
            mt = mt @ back
            h, w = nh, nw
    full = torch.cat([mt, torch.tensor([0.0, 0.0, 1.0], dtype=images.dtype, device=images.device).expand(mt.shape[0], 1, 3)], 1)
    inv = torch.linalg.inv(full)  # output pixel -> source pixel

    n_src = torch.tensor([[2.0 / max(w - 1, 1), 0, -1], [0, 2.0 / max(h - 1, 1), -1], [0, 0, 1]], dtype=images.dtype, device=images.device)
    n_out = torch.tensor([[2.0 / max(ow - 1, 1), 0, -1], [0, 2.0 / max(oh - 1, 1), -1], [0, 0, 1]], dtype=images.dtype, device=images.device)
    theta = n_src @ inv @ torch.linalg.inv(n_out)
    grid = F.affine_grid(theta[:, :2], [n, images.shape[1], oh, ow], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def descriptor(chips_rgb: Any, device: str = "cpu"):
    """Convenience: (N, 150, 150, 3) uint8 chips (numpy) -> (N, 128) torch descriptors."""
    import torch

    arr = np.asarray(chips_rgb)
    if arr.ndim == 3:
        arr = arr[None]
    x = torch.from_numpy(arr.astype(np.float32)).permute(0, 3, 1, 2).to(device)
    with torch.no_grad():
        return load(device)(x)


__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "align_matrix",
    "chip_matrix",
    "descriptor",
    "invert_affine",
    "landmarks",
    "load",
    "model_path",
    "parse_dat",
    "warp_affine",
]
