"""Transformer building blocks emitted into a GraphBuilder.

Each block has two spellings: ``fused`` uses ONNX Runtime's contrib operators
(Attention, SkipLayerNormalization, BiasGelu, FastGelu), which its CPU and CUDA kernels
run in one pass; the plain spelling uses only opset-17 operators, which TensorRT's parser
fuses on its own and which any runtime can execute.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.graph import MS_DOMAIN, GraphBuilder

F32 = NDArray[np.float32]

# A large negative added to the scores of padded keys; the same value ORT's Attention uses,
# small enough to stay finite in fp16.
MASK_FILL = -10000.0

# hidden_act spellings in transformers configs -> how we compute them
_EXACT_GELU = {"gelu", "gelu_python"}
_TANH_GELU = {"gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate"}
_RELU = {"relu"}
_SILU = {"silu", "swish"}


def check_activation(name: str) -> str:
    if name in _EXACT_GELU | _TANH_GELU | _RELU | _SILU:
        return name
    raise UnsupportedModelError(f"activation {name!r} is not supported")


def linear(g: GraphBuilder, x: str, weight: F32, bias: F32 | None, name: str) -> str:
    """x @ weight.T + bias for a torch Linear weight (out, in)."""
    y = g.op("MatMul", x, g.weight(f"{name}.weight_t", weight.T.copy()))
    if bias is not None:
        y = g.op("Add", y, g.weight(f"{name}.bias", bias))
    return y


def layer_norm(g: GraphBuilder, x: str, gamma: F32, beta: F32, eps: float, name: str) -> str:
    return g.op(
        "LayerNormalization",
        x,
        g.weight(f"{name}.weight", gamma),
        g.weight(f"{name}.bias", beta),
        axis=-1,
        epsilon=float(eps),
    )


def skip_layer_norm(
    g: GraphBuilder,
    x: str,
    skip: str,
    bias: F32 | None,
    gamma: F32,
    beta: F32,
    eps: float,
    name: str,
    fused: bool,
) -> str:
    """LayerNorm(x + bias + skip): the residual step after attention and after the MLP."""
    if fused:
        inputs = [x, skip, g.weight(f"{name}.weight", gamma), g.weight(f"{name}.bias", beta)]
        if bias is not None:
            inputs.append(g.weight(f"{name}.residual_bias", bias))
        return g.op("SkipLayerNormalization", *inputs, domain=MS_DOMAIN, epsilon=float(eps))
    if bias is not None:
        x = g.op("Add", x, g.weight(f"{name}.residual_bias", bias))
    return layer_norm(g, g.op("Add", x, skip), gamma, beta, eps, name)


def activation(g: GraphBuilder, x: str, bias: F32 | None, act: str, name: str, fused: bool) -> str:
    """act(x + bias)."""
    if fused and act in _EXACT_GELU and bias is not None:
        return g.op("BiasGelu", x, g.weight(f"{name}.bias", bias), domain=MS_DOMAIN)
    if fused and act in _TANH_GELU:
        inputs = [x] if bias is None else [x, g.weight(f"{name}.bias", bias)]
        return g.op("FastGelu", *inputs, domain=MS_DOMAIN)
    if bias is not None:
        x = g.op("Add", x, g.weight(f"{name}.bias", bias))
    if act in _EXACT_GELU:
        # 0.5 * x * (1 + erf(x / sqrt(2)))
        erf = g.op("Erf", g.op("Mul", x, g.const(1.0 / math.sqrt(2.0), np.float32)))
        return g.op(
            "Mul",
            g.op("Mul", x, g.const(0.5, np.float32)),
            g.op("Add", erf, g.const(1.0, np.float32)),
        )
    if act in _TANH_GELU:
        # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        cube = g.op("Mul", g.op("Mul", x, x), x)
        inner = g.op("Add", x, g.op("Mul", cube, g.const(0.044715, np.float32)))
        tanh = g.op("Tanh", g.op("Mul", inner, g.const(math.sqrt(2.0 / math.pi), np.float32)))
        return g.op(
            "Mul",
            g.op("Mul", x, g.const(0.5, np.float32)),
            g.op("Add", tanh, g.const(1.0, np.float32)),
        )
    if act in _RELU:
        return g.op("Relu", x)
    if act in _SILU:
        return g.op("Mul", x, g.op("Sigmoid", x))
    raise UnsupportedModelError(f"activation {act!r} is not supported")


def additive_mask(g: GraphBuilder, mask: str) -> str:
    """(B, T) int64 1/0 mask -> (B, 1, 1, T) float additive bias for the plain attention."""
    as_float = g.op("Cast", mask, to=1)  # FLOAT
    bias = g.op(
        "Mul", g.op("Sub", g.const(1.0, np.float32), as_float), g.const(MASK_FILL, np.float32)
    )
    return g.op("Unsqueeze", bias, g.const([1, 2]))  # (B, 1, 1, T)


def self_attention(
    g: GraphBuilder,
    x: str,
    w_qkv: F32,
    b_qkv: F32,
    num_heads: int,
    mask: str,
    name: str,
    fused: bool,
    attention_bias: str | None = None,
) -> str:
    """Bidirectional multi-head self-attention without the output projection.

    ``w_qkv`` is (H, 3H) with columns [q | k | v] (already transposed for x @ w);
    ``mask`` is the (B, T) int32 key mask for the fused op, or the (B, 1, 1, T) additive
    float bias for the plain spelling. ``attention_bias`` (1 or B, N, T, T), when given,
    is added to the scaled scores (ALiBi, relative position buckets). Returns (B, T, H).
    """
    hidden = w_qkv.shape[0]
    if fused:
        weight, bias = g.weight(f"{name}.qkv_weight", w_qkv), g.weight(f"{name}.qkv_bias", b_qkv)
        inputs = [x, weight, bias, mask]
        if attention_bias is not None:
            inputs += ["", attention_bias]  # no past state
        return g.op("Attention", *inputs, domain=MS_DOMAIN, num_heads=num_heads)
    qkv = g.op(
        "Add",
        g.op("MatMul", x, g.weight(f"{name}.qkv_weight", w_qkv)),
        g.weight(f"{name}.qkv_bias", b_qkv),
    )
    q, k, v = g.op_multi("Split", qkv, g.const([hidden, hidden, hidden]), axis=-1, outputs=3)
    return _attend(g, q, k, v, num_heads, mask, attention_bias, hidden // num_heads)


def _attend(
    g: GraphBuilder,
    q: str,
    k: str,
    v: str,
    num_heads: int,
    mask: str,
    attention_bias: str | None,
    head_dim: int,
) -> str:
    """softmax(q k^T / sqrt(D) + mask [+ bias]) v in plain operators; q, k, v (B, T, H)."""
    hidden = num_heads * head_dim
    heads_shape = g.const([0, 0, num_heads, head_dim])
    q = g.op("Transpose", g.op("Reshape", q, heads_shape), perm=[0, 2, 1, 3])  # (B, N, T, D)
    k = g.op("Transpose", g.op("Reshape", k, heads_shape), perm=[0, 2, 3, 1])  # (B, N, D, T)
    v = g.op("Transpose", g.op("Reshape", v, heads_shape), perm=[0, 2, 1, 3])  # (B, N, T, D)
    scores = g.op("Mul", g.op("MatMul", q, k), g.const(1.0 / math.sqrt(head_dim), np.float32))
    if attention_bias is not None:
        scores = g.op("Add", scores, attention_bias)
    probs = g.op("Softmax", g.op("Add", scores, mask), axis=-1)  # (B, N, T, T)
    context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])  # (B, T, N, D)
    return g.op("Reshape", context, g.const([0, 0, hidden]))  # (B, T, H)


def rms_norm(g: GraphBuilder, x: str, gamma: F32, eps: float, name: str) -> str:
    """x / sqrt(mean(x^2) + eps) * gamma over the last axis (Llama / Qwen RMSNorm).

    Spelt Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul, the pattern ONNX Runtime's
    optimizer fuses into its SimplifiedLayerNormalization kernel; emitting that operator
    directly would fail onnx.checker (ORT registers it in the ONNX domain, unknown to ONNX).
    """
    square = g.op("Pow", x, g.const(2.0, np.float32))
    mean_square = g.op("ReduceMean", square, axes=[-1], keepdims=1)
    rms = g.op("Sqrt", g.op("Add", mean_square, g.const(eps, np.float32)))
    return g.op("Mul", g.op("Div", x, rms), g.weight(f"{name}.weight", gamma))


def multi_head_attention(
    g: GraphBuilder,
    q: str,
    k: str,
    v: str,
    num_heads: int,
    head_dim: int,
    mask: str,
    fused: bool,
    attention_bias: str | None = None,
) -> str:
    """Attention over already projected (and rotated) q, k, v (B, T, H) each.

    ``mask`` as for ``self_attention``: the (B, T) int32 key mask for the fused
    com.microsoft.MultiHeadAttention, the (B, 1, 1, T) additive bias for the plain spelling.
    Returns (B, T, H), before the output projection.
    """
    if fused:
        inputs = [q, k, v, "", mask]  # no packed bias: the projections added theirs
        if attention_bias is not None:
            inputs.append(attention_bias)
        return g.op("MultiHeadAttention", *inputs, domain=MS_DOMAIN, num_heads=num_heads)
    return _attend(g, q, k, v, num_heads, mask, attention_bias, head_dim)


def alibi_slopes(num_heads: int) -> F32:
    """ALiBi head slopes (Press et al.): 2^(-8i/n) for n a power of two; other head counts
    take the power of two below, then every other slope of twice that (the paper's rule)."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = power_of_two(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: num_heads - closest]
    return np.asarray(slopes, dtype=np.float32)


def token_distance(g: GraphBuilder, like: str) -> str:
    """|i - j| between every pair of positions, (T, T) int64, T read from dim 1 of ``like``
    (B, T, ...), so one graph serves every length."""
    seq_len = g.op("Gather", g.op("Shape", like), g.const(1))  # () int64
    positions = g.op("Range", g.const(0), seq_len, g.const(1))  # (T,)
    return g.op(
        "Abs",
        g.op(
            "Sub",
            g.op("Unsqueeze", positions, g.const([1])),
            g.op("Unsqueeze", positions, g.const([0])),
        ),
    )  # (T, T)


def alibi_bias(g: GraphBuilder, slopes: F32, like: str, name: str) -> str:
    """Symmetric ALiBi: -slope_h * |i - j| as a (1, N, T, T) additive score bias.

    T is read from dim 1 of ``like`` (B, T, ...), so one graph serves every length.
    """
    distance = g.op("Cast", token_distance(g, like), to=1)  # (T, T) float
    neg_slopes = g.weight(f"{name}.slopes", (-slopes).reshape(1, -1, 1, 1))  # (1, N, 1, 1)
    return g.op("Mul", neg_slopes, distance)  # (1, N, T, T)


def gated_mlp(
    g: GraphBuilder,
    x: str,
    w_gate: F32,
    w_value: F32,
    act: str,
    name: str,
    fused: bool,
) -> str:
    """act(x @ w_gate.T) * (x @ w_value.T) for torch Linear weights (I, H) without biases.

    One MatMul over the two weights side by side, then a split: GLU variants (SwiGLU,
    GEGLU) differ only in which half of a packed projection is the gate, which the
    caller settles by passing the halves in the right roles.
    """
    inter = w_gate.shape[0]
    packed = np.concatenate([w_gate.T, w_value.T], axis=1)  # (H, 2I), columns [gate | value]
    both = g.op("MatMul", x, g.weight(f"{name}.gate_value_t", packed))  # (B, T, 2I)
    gate, value = g.op_multi("Split", both, g.const([inter, inter]), axis=-1, outputs=2)
    return g.op("Mul", activation(g, gate, None, act, name + ".act", fused), value)  # (B, T, I)
