"""One benchmark method in its own process (torch and ONNX Runtime in one process fight
over the cores). Prints one JSON object per measurement on stdout.

    python bench/worker.py st|st-bf16|ort|tei|tei-int8|tei-bf16|matmul|matmul-bf16|export-ref
        --model DIR [...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.texts import text_sets

MAX_LENGTH = 256  # all-MiniLM-L6-v2's limit (sentence-transformers max_seq_length)
#: tei-ort methods -> the dtype they load
TEI_DTYPES = {"tei": "float32", "tei-int8": "int8", "tei-bf16": "bfloat16"}
BATCH = 32  # sentence-transformers' default encode batch size; the raw ORT peer uses it too


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def measure(
    method: str,
    sets: dict[str, list[str]],
    embed: Callable[[Sequence[str]], Any],
    repeats: int,
    only: Sequence[str],
) -> None:
    """Throughput per set (median of ``repeats`` passes) and one-text latency."""
    embed(sets["short"][:8])  # warm up
    for name in only:
        texts = sets[name]
        embed(texts[: min(len(texts), 32)])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            embed(texts)
            times.append(time.perf_counter() - start)
        emit(
            method=method,
            set=name,
            texts=len(texts),
            seconds=statistics.median(times),
            all_seconds=times,
        )
    lat = []
    for i in range(200):
        start = time.perf_counter()
        embed([sets["short"][i]])
        lat.append(time.perf_counter() - start)
    lat_ms = np.array(lat[20:]) * 1e3
    emit(
        method=method,
        set="one",
        p50_ms=float(np.percentile(lat_ms, 50)),
        p99_ms=float(np.percentile(lat_ms, 99)),
    )


def run_st(
    model: Path, sets: dict[str, list[str]], args: argparse.Namespace, bf16: bool = False
) -> None:
    """sentence-transformers as a user runs it; ``bf16``: the model cast to bfloat16 (torch
    runs it on oneDNN, AMX where the CPU has it)."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(cores())
    st = SentenceTransformer(str(model), device="cpu")
    st.max_seq_length = MAX_LENGTH
    method = "st-bf16" if bf16 else "st"
    if bf16:
        st = st.to(torch.bfloat16)
    emit(method=method, info=f"sentence-transformers, torch {torch.__version__}")

    def embed(texts: Sequence[str]) -> Any:
        with torch.inference_mode():
            return st.encode(list(texts), batch_size=BATCH, normalize_embeddings=True)

    measure(method, sets, embed, args.repeats, args.sets)


def export_ref(model: Path, out: Path) -> None:
    """all-MiniLM-L6-v2 through torch.onnx, then onnxruntime's transformers optimizer."""
    import torch
    import transformers
    from onnxruntime.transformers import optimizer

    base = transformers.AutoModel.from_pretrained(str(model), attn_implementation="eager").eval()

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.base(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    raw = out / "ref.onnx"
    torch.onnx.export(
        Wrapped(),
        dummy,
        str(raw),
        input_names=names,
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
        opset_version=17,
        dynamo=False,
    )
    config = base.config
    opt = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
    )
    opt.save_model_to_file(str(out / "ref.opt.onnx"))
    emit(method="export-ref", fused=opt.get_fused_operator_statistics())


def run_ort(
    model: Path, onnx_path: Path, sets: dict[str, list[str]], args: argparse.Namespace
) -> None:
    """The usual hand-written ORT loop: tokenize, pad per batch, run, mean-pool, normalize."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.enable_truncation(MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cores()
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    emit(method="ort", info=f"onnxruntime {ort.__version__}, transformers optimizer")

    def embed(texts: Sequence[str]) -> Any:
        # sorted by length like sentence-transformers' encode, so both pad the same
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), 384), np.float32)
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            enc = tok.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            hidden = session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / m.sum(1)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    measure("ort", sets, embed, args.repeats, args.sets)


def run_tei(model: Path, sets: dict[str, list[str]], args: argparse.Namespace, dtype: str) -> None:
    import tei_ort

    start = time.perf_counter()
    m = tei_ort.load(str(model), engine_cache=args.engine_cache, dtype=dtype)
    emit(
        method=f"tei-{dtype}",
        info="tei-ort in-process",
        load_seconds=time.perf_counter() - start,
        built=m.loaded.built,
        steps=m.loaded.seconds,
    )
    measure(f"tei-{dtype}", sets, m.embed, args.repeats, args.sets)


def run_matmul() -> None:
    """The machine's MatMul rates in ONNX Runtime: fp32 and u8 x s8 (dynamic quantized)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = 4096, 384, 1536  # MiniLM's FFN up projection at 32 x 128 tokens
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k)).astype(np.float32)

    def rate(node: Any, inits: list[Any], domain: bool) -> float:
        graph = helper.make_graph(
            [node],
            "mm",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            initializer=inits,
        )
        opsets = [helper.make_opsetid("", 17)]
        if domain:
            opsets.append(helper.make_opsetid("com.microsoft", 1))
        proto = helper.make_model(graph, opset_imports=opsets)
        proto.ir_version = 8
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cores()
        s = ort.InferenceSession(
            proto.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        for _ in range(3):
            s.run(None, {"x": x})
        times = []
        for _ in range(20):
            start = time.perf_counter()
            s.run(None, {"x": x})
            times.append(time.perf_counter() - start)
        return 2.0 * m * k * n / statistics.median(times) / 1e9

    fp32 = rate(
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")],
        False,
    )
    int8 = rate(
        helper.make_node(
            "DynamicQuantizeMatMul", ["x", "w", "s", "z"], ["y"], domain="com.microsoft"
        ),
        [
            numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "w"),
            numpy_helper.from_array(np.full((n,), 0.01, np.float32), "s"),
            numpy_helper.from_array(np.zeros((n,), np.int8), "z"),
        ],
        True,
    )
    emit(method="matmul", fp32_gflops=fp32, int8_gflops=int8, shape=[m, k, n])


def run_matmul_bf16() -> None:
    """The machine's bf16 MatMul rate in OpenVINO (AMX-BF16 where the CPU has it), on the
    same shape as run_matmul: what the bf16 engine's linear layers can reach."""
    from tei_ort.engines.openvino_runtime import import_openvino

    ov = import_openvino()
    import openvino.opset13 as ops

    m, k, n = 4096, 384, 1536
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k)).astype(np.float32)
    param = ops.parameter([m, k], np.float32, name="x")
    weight = ops.constant(rng.standard_normal((k, n)).astype(np.float32))
    graph = ov.Model([ops.matmul(param, weight, False, False)], [param], "mm")
    config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": cores()}
    request = ov.Core().compile_model(graph, "CPU", config).create_infer_request()
    for _ in range(3):
        request.infer({"x": x})
    times = []
    for _ in range(20):
        start = time.perf_counter()
        request.infer({"x": x})
        times.append(time.perf_counter() - start)
    rate = 2.0 * m * k * n / statistics.median(times) / 1e9
    emit(method="matmul-bf16", bf16_gflops=rate, shape=[m, k, n], openvino=ov.__version__)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--engine-cache")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=["short", "t128", "t512", "mix"])
    args = parser.parse_args()
    if args.method == "export-ref":
        export_ref(args.model, args.out)
        return
    if args.method == "matmul":
        run_matmul()
        return
    if args.method == "matmul-bf16":
        run_matmul_bf16()
        return
    sets = text_sets(args.model / "tokenizer.json")
    if args.method in ("st", "st-bf16"):
        run_st(args.model, sets, args, bf16=args.method == "st-bf16")
    elif args.method == "ort":
        run_ort(args.model, args.onnx, sets, args)
    elif args.method in TEI_DTYPES:
        run_tei(args.model, sets, args, TEI_DTYPES[args.method])
    else:
        raise SystemExit(f"unknown method {args.method}")


if __name__ == "__main__":
    main()
