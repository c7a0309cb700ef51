"""NomicBert (nomic-ai/nomic-embed-text-v1 / v1.5, remote code ``nomic_bert``).

A post-LayerNorm BERT without absolute positions: rotary embeddings on q and k
(rotate-half layout over the whole head), a packed Wqkv projection, and a SwiGLU MLP
``fc2(fc11(x) * silu(fc12(x)))`` (fc12 is the gate). The released v1 models have no
biases; a checkpoint that carries them gets them applied.

nomic-embed-text-v2-moe: a plain GELU MLP ``fc2(gelu(fc1(x)))`` with biases, and every
``moe_every_n_layers``-th layer (counting from 1: layers 1, 3, ... for 2) a mixture of
experts with top-k routing (``exporters.moe``), as the remote code's NomicMoELayer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tei_ort.engines.base import OutputName
from tei_ort.exporters import blocks, layers, moe, rotary
from tei_ort.exporters.errors import UnsupportedModelError
from tei_ort.exporters.export import ExportContext, GraphOutput
from tei_ort.exporters.graph import INT64, GraphBuilder
from tei_ort.exporters.head_kind import Head
from tei_ort.exporters.weights import WeightStore

# options of the remote NomicBertConfig that change the computation: the value this
# exporter implements for each; anything else is refused by name
_REQUIRED: dict[str, Any] = {
    "prenorm": False,
    "causal": False,
    "parallel_block": False,
    "use_rms_norm": False,
    "rotary_emb_interleaved": False,
    "rotary_emb_scale_base": None,  # xPos
    "rotary_scaling_factor": None,  # dynamic NTK: the frequencies would depend on T
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "num_shared_experts": 0,
    "expert_choice_router": False,
    "moe_normalize_expert_weights": False,
}
# activation_function -> (gated MLP?, activation); the remote code applies exact GELU
_MLP_ACTIVATIONS = {"swiglu": (True, "silu"), "gelu": (False, "gelu")}


@dataclass(frozen=True)
class NomicConfig:
    hidden: int
    heads: int
    layers: int
    eps: float
    vocab: int
    type_vocab: int
    max_positions: int
    rotary_base: float
    gated: bool  # SwiGLU fc11 / fc12, or a plain fc1
    act: str
    moe_every: int  # 0: no MoE layers
    moe: moe.MoeConfig | None

    def is_moe(self, layer: int) -> bool:
        return self.moe_every > 0 and layer % self.moe_every == 1

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NomicConfig:
        for key, wanted in _REQUIRED.items():
            # null is the remote code's default for each of these
            if config.get(key) is not None and config[key] != wanted:
                raise UnsupportedModelError(
                    f"nomic_bert option {key}={config[key]!r} is not supported (only {wanted!r})"
                )
        act = config.get("activation_function", "swiglu")
        if act not in _MLP_ACTIVATIONS:
            raise UnsupportedModelError(
                f"nomic_bert activation_function {act!r} is not supported "
                f"(only {', '.join(map(repr, _MLP_ACTIVATIONS))})"
            )
        gated, mlp_act = _MLP_ACTIVATIONS[act]
        fraction = float(config.get("rotary_emb_fraction", 0.0))
        if fraction != 1.0:
            raise UnsupportedModelError(
                f"nomic_bert rotary_emb_fraction {fraction} is not supported (only 1.0: "
                "rotary over the whole head, no absolute position table)"
            )
        moe_every = int(config.get("moe_every_n_layers") or 0)
        experts = int(config.get("num_experts") or 0)
        if (moe_every > 0) != (experts > 0):
            raise UnsupportedModelError(
                "nomic_bert needs both num_experts and moe_every_n_layers for MoE layers"
            )
        if experts and gated:
            raise UnsupportedModelError("nomic_bert MoE with gated (GLU) experts is not supported")
        try:
            positions = max(
                int(config["n_positions"]), int(config.get("max_trained_positions") or 0)
            )
            return cls(
                hidden=int(config["n_embd"]),
                heads=int(config["n_head"]),
                layers=int(config["n_layer"]),
                eps=float(config.get("layer_norm_epsilon", 1e-5)),
                vocab=int(config["vocab_size"]),
                type_vocab=int(config.get("type_vocab_size") or 0),
                max_positions=positions,
                rotary_base=float(config.get("rotary_emb_base", 10000.0)),
                gated=gated,
                act=mlp_act,
                moe_every=moe_every,
                moe=moe.MoeConfig(
                    hidden=int(config["n_embd"]),
                    ffn=int(config["n_inner"]),
                    experts=experts,
                    top_k=int(config.get("moe_top_k") or 1),
                    act=mlp_act,
                )
                if experts
                else None,
            )
        except KeyError as exc:
            raise UnsupportedModelError(f"config.json lacks {exc.args[0]!r}") from exc


def _embeddings(g: GraphBuilder, store: WeightStore, cfg: NomicConfig, input_ids: str) -> str:
    h = cfg.hidden
    word = store.take("embeddings.word_embeddings.weight", (cfg.vocab, h))
    x = g.op("Gather", g.weight("embeddings.word", word), input_ids)  # (B, T, H)
    if cfg.type_vocab >= 2:
        types = store.take("embeddings.token_type_embeddings.weight", (cfg.type_vocab, h))
        token_type_ids = g.input("token_type_ids", INT64, ["batch", "sequence"])
        x = g.op("Add", x, g.op("Gather", g.weight("embeddings.token_type", types), token_type_ids))
    elif cfg.type_vocab == 1:
        types = store.take("embeddings.token_type_embeddings.weight", (1, h))
        x = g.op("Add", x, g.weight("embeddings.token_type_row", types[0]))
    gamma, beta = store.take("emb_ln.weight", (h,)), store.take("emb_ln.bias", (h,))
    return layers.layer_norm(g, x, gamma, beta, cfg.eps, "embeddings.ln")


def build_encoder(
    g: GraphBuilder,
    store: WeightStore,
    config: dict[str, Any],
    fused: bool,
    input_ids: str,
    attention_mask: str,
) -> tuple[str, NomicConfig]:
    cfg = NomicConfig.from_config(config)
    h = cfg.hidden
    if h % cfg.heads:
        raise UnsupportedModelError(f"n_embd {h} is not divisible by {cfg.heads} heads")
    head_dim = h // cfg.heads
    x = _embeddings(g, store, cfg, input_ids)
    tables = rotary.rotary_tables(
        g,
        rotary.default_inv_freq(head_dim, cfg.rotary_base),
        cfg.max_positions,
        cfg.heads,
        head_dim,
        x,
        "rotary",
    )
    mask = g.op("Cast", attention_mask, to=6) if fused else layers.additive_mask(g, attention_mask)
    for i in range(cfg.layers):
        p, name = f"encoder.layers.{i}.", f"layer{i}"
        qkv = layers.linear(
            g,
            x,
            store.take(p + "attn.Wqkv.weight", (3 * h, h)),
            store.take_optional(p + "attn.Wqkv.bias", (3 * h,)),
            name + ".qkv",
        )  # (B, T, 3H), [q | k | v]
        q, k, v = g.op_multi("Split", qkv, g.const([h, h, h]), axis=-1, outputs=3)
        q, k = rotary.rotate(g, q, tables), rotary.rotate(g, k, tables)
        attn = layers.multi_head_attention(g, q, k, v, cfg.heads, head_dim, mask, fused)
        x = blocks.project_add_norm(
            g,
            store,
            attn,
            x,
            projection=p + "attn.out_proj",
            norm=p + "norm1",
            in_features=h,
            hidden=h,
            eps=cfg.eps,
            name=name + ".out",
            fused=fused,
            bias_optional=True,
        )
        if cfg.is_moe(i):
            assert cfg.moe is not None
            out = moe.moe_mlp(g, store, x, cfg.moe, p + "mlp.", name + ".moe")
            gamma, beta = store.take(p + "norm2.weight", (h,)), store.take(p + "norm2.bias", (h,))
            x = layers.skip_layer_norm(g, out, x, None, gamma, beta, cfg.eps, name + ".ln2", fused)
        elif cfg.gated:
            x = _mlp(g, store, x, cfg, p, name, fused)
        else:
            x = _plain_mlp(g, store, x, cfg, p, name, fused)
    return x, cfg


def _mlp(
    g: GraphBuilder, store: WeightStore, x: str, cfg: NomicConfig, p: str, name: str, fused: bool
) -> str:
    h = cfg.hidden
    # the hidden width is n_inner rounded up by the modeling code: read it off the weights
    shape = store.shape(p + "mlp.fc11.weight")
    if len(shape) != 2 or shape[1] != h:
        raise UnsupportedModelError(f"{p}mlp.fc11.weight has shape {shape}, expected (I, {h})")
    inter = shape[0]
    value = store.take(p + "mlp.fc11.weight", (inter, h))
    gate = store.take(p + "mlp.fc12.weight", (inter, h))
    if p + "mlp.fc11.bias" in store or p + "mlp.fc12.bias" in store:
        raise UnsupportedModelError("nomic_bert with mlp_fc1_bias is not supported")
    up = layers.gated_mlp(g, x, gate, value, "silu", name + ".mlp", fused)  # (B, T, I)
    return _down_add_norm(g, store, up, x, cfg, p, name, fused, inter)


def _plain_mlp(
    g: GraphBuilder, store: WeightStore, x: str, cfg: NomicConfig, p: str, name: str, fused: bool
) -> str:
    """norm2(x + fc2(act(fc1(x)))), biases where the checkpoint has them."""
    h = cfg.hidden
    shape = store.shape(p + "mlp.fc1.weight")
    if len(shape) != 2 or shape[1] != h:
        raise UnsupportedModelError(f"{p}mlp.fc1.weight has shape {shape}, expected (I, {h})")
    inter = shape[0]
    weight = store.take(p + "mlp.fc1.weight", (inter, h))
    bias = store.take_optional(p + "mlp.fc1.bias", (inter,))
    up = g.op("MatMul", x, g.weight(f"{name}.fc1.weight_t", weight.T.copy()))  # (B, T, I)
    up = layers.activation(g, up, bias, cfg.act, name + ".act", fused)
    return _down_add_norm(g, store, up, x, cfg, p, name, fused, inter)


def _down_add_norm(
    g: GraphBuilder,
    store: WeightStore,
    up: str,
    x: str,
    cfg: NomicConfig,
    p: str,
    name: str,
    fused: bool,
    inter: int,
) -> str:
    """norm2(x + fc2(up)): the MLP's way back to the residual stream, (B, T, H)."""
    return blocks.project_add_norm(
        g,
        store,
        up,
        x,
        projection=p + "mlp.fc2",
        norm=p + "norm2",
        in_features=inter,
        hidden=cfg.hidden,
        eps=cfg.eps,
        name=name + ".down",
        fused=fused,
        bias_optional=True,
    )


def build(ctx: ExportContext) -> GraphOutput:
    """Hidden states; NomicBert ships no classifier or SPLADE checkpoints to serve."""
    if ctx.head is not Head.BASE:
        raise UnsupportedModelError(
            f"nomic_bert supports embeddings only, not the {ctx.head.value} head"
        )
    store = WeightStore(ctx.weight_files, strip_prefixes=("bert.",))
    hidden, cfg = build_encoder(
        ctx.g, store, ctx.config, ctx.fused, ctx.input_ids, ctx.attention_mask
    )
    store.ignore("pooler.")  # NomicBertModel(add_pooling_layer=True) checkpoints
    store.finish()
    return GraphOutput(hidden, OutputName.LAST_HIDDEN_STATE, ["batch", "sequence", cfg.hidden])
