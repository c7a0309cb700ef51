"""GPU check: float16 parity and throughput of tei-ort's GPU engines on one machine.

Run it wherever an NVIDIA GPU is lent (nothing here needs the network)::

    python bench/gpu_check.py --out bench/results/gpu_check.json

0. The stack: what is installed against ``engines/gpu_stack.py`` (CUDA 13 onnxruntime-gpu
   alone, TensorRT 10 or 11, the CUDA 13 runtime wheels and which libcudart loaded).
1. Parity: each GPU engine (ONNX Runtime CUDA with IOBinding, with and without CUDA
   graphs; TensorRT when ``tensorrt`` is installed) against the float32 CPU engine, on
   all-MiniLM-L6-v2 (real weights) and on a bert-base-shaped model (random weights, seeded):
   mean-pooled vectors, cosine >= 0.999 each in float16 and >= 0.99999 in float32 (TF32 is
   off). Runs go through a worker thread, as the server's engine thread does (the CUDA
   device is per host thread), and ONNX Runtime engines are loaded a second time from the
   engine cache (the graph ONNX Runtime optimized for CUDA and saved) and checked again.
2. Throughput: the bert-base-shaped model, batch 32 at 128 and 512 tokens, sequences per
   second (median of repeats), next to sentence-transformers in float16 on the same GPU
   (its forward pass on the same token ids, so tokenization is left out of both).

Each part reports what it skipped and why (no onnxruntime-gpu, no tensorrt, no torch with
CUDA). The exit status is 1 when any parity check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tei_ort.engines.base import Engine, EngineInputs
from tei_ort.model.hub import default_model_path
from tei_ort.model.info import Pooling
from tei_ort.model.loading import ModelOptions, load_model
from tei_ort.serving.pooling import pool

MIN_COSINE = 0.999  # float16 against float32
MIN_COSINE_FP32 = 0.99999  # float32 on the GPU (TF32 off) against float32 on the CPU
BERT_BASE = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "pad_token_id": 0,
}


def environment() -> dict[str, Any]:
    import onnxruntime

    found: dict[str, Any] = {
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
    }
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,compute_cap,memory.total,driver_version"
        out = subprocess.run([smi, query, "--format=csv,noheader"], capture_output=True, text=True)
        found["gpu"] = out.stdout.strip()
    for name in ("tensorrt", "torch", "sentence_transformers", "transformers"):
        try:
            module = __import__(name)
            found[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            found[name] = None
    found["stack"] = stack(onnxruntime, found["tensorrt"])
    return found


def stack(onnxruntime: Any, tensorrt_version: str | None) -> dict[str, Any]:
    """The installed GPU stack against gpu_stack.STACK: versions, and what is refused."""
    import importlib.metadata

    from tei_ort.engines import _cudart
    from tei_ort.engines.gpu_stack import (
        STACK,
        check_onnxruntime_cuda,
        onnxruntime_packages,
        supported_tensorrt,
    )

    info = onnxruntime.capi.build_and_package_info
    found: dict[str, Any] = {
        "supported": {
            "cuda_major": STACK.cuda_major,
            "cudnn_major": STACK.cudnn_major,
            "onnxruntime_gpu": STACK.onnxruntime_gpu,
            "tensorrt_majors": list(STACK.tensorrt_majors),
        },
        "onnxruntime_packages": onnxruntime_packages(),
        "onnxruntime_cuda_version": getattr(info, "cuda_version", None),
        "errors": [],
    }
    wheels = ["nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cudnn-cu13", "nvidia-curand"]
    wheels += ["tensorrt-cu13", "tensorrt-cu13-bindings", "tensorrt-cu13-libs"]
    for wheel in wheels:
        try:
            found[wheel] = importlib.metadata.version(wheel)
        except importlib.metadata.PackageNotFoundError:
            found[wheel] = None
    library = _cudart.library()
    found["libcudart"] = getattr(library, "_name", None)
    checks: list[Callable[[], object]] = [lambda: check_onnxruntime_cuda(onnxruntime)]
    if tensorrt_version is not None:
        checks.append(lambda: supported_tensorrt(tensorrt_version))
    for check in checks:
        try:
            check()
        except Exception as exc:
            found["errors"].append(str(exc))
    return found


def write_bert_base(root: Path, seed: int = 0) -> Path:
    """A bert-base-shaped checkpoint with random weights (numpy only) and a tokenizer."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    h, inter, cfg = 768, 3072, BERT_BASE

    def w(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    tensors = {
        "embeddings.word_embeddings.weight": w(cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": w(512, h),
        "embeddings.token_type_embeddings.weight": w(2, h),
        "embeddings.LayerNorm.weight": 1 + w(h, scale=0.1),
        "embeddings.LayerNorm.bias": w(h),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            tensors[p + f"attention.self.{name}.weight"] = w(h, h)
            tensors[p + f"attention.self.{name}.bias"] = w(h)
        tensors[p + "attention.output.dense.weight"] = w(h, h)
        tensors[p + "attention.output.dense.bias"] = w(h)
        tensors[p + "intermediate.dense.weight"] = w(inter, h)
        tensors[p + "intermediate.dense.bias"] = w(inter)
        tensors[p + "output.dense.weight"] = w(h, inter)
        tensors[p + "output.dense.bias"] = w(h)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[p + norm + ".weight"] = 1 + w(h, scale=0.1)
            tensors[p + norm + ".bias"] = w(h)
    root.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps(cfg))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(cfg["vocab_size"] - len(specials))]
    (root / "vocab.txt").write_text("\n".join(specials + words) + "\n")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(specials + words)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tokenizer.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    return root


def batch(rows: int, seq_len: int, vocab: int, seed: int, ragged: bool) -> EngineInputs:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, size=(rows, seq_len), dtype=np.int64)
    lengths = rng.integers(seq_len // 4, seq_len + 1, size=rows) if ragged else [seq_len] * rows
    mask = (np.arange(seq_len)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    ids[:, 0] = 101  # [CLS]
    ids = np.where(mask == 1, ids, 0)
    return EngineInputs(ids, mask, np.zeros_like(ids))


def on_worker(engine: Engine, inputs: EngineInputs) -> np.ndarray:
    """``pooled`` on another thread than the one that loaded the engine (as the server)."""
    with ThreadPoolExecutor(max_workers=1) as pool_:
        return pool_.submit(pooled, engine, inputs).result()


def pooled(engine: Engine, inputs: EngineInputs) -> np.ndarray:
    return pool(engine.run(inputs), inputs.attention_mask, Pooling.MEAN)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos.min())


def time_it(step: Callable[[], object], warmup: int, repeats: int, iters: int) -> float:
    """Median seconds per call over ``repeats`` runs of ``iters`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            step()
        times.append((time.perf_counter() - start) / iters)
    return statistics.median(times)


GPU_VARIANTS: dict[str, dict[str, Any]] = {
    "ort-cuda": {"provider": "cuda"},
    "ort-cuda+graphs": {"provider": "cuda", "cuda_graphs": True},
    "ort-cuda-fp32": {"provider": "cuda", "dtype": "float32"},
    "tensorrt": {"provider": "tensorrt"},
    "tensorrt-fp32": {"provider": "tensorrt", "dtype": "float32"},
}
#: the parity-only variants (the throughput part times the float16 ones)
FP32_VARIANTS = ("ort-cuda-fp32", "tensorrt-fp32")


def load_engine(model_dir: Path, cache: Path, **options: Any) -> Engine:
    return load_model(
        ModelOptions(
            model_id=str(model_dir), engine_cache=str(cache), pooling=Pooling.MEAN, **options
        ),
        progress=lambda message: print(f"    {message}", flush=True),
    ).engine


def check_parity(models: dict[str, Path], variants: list[str], cache: Path) -> list[dict[str, Any]]:
    results = []
    for model_name, model_dir in models.items():
        vocab = int(json.loads((model_dir / "config.json").read_text())["vocab_size"])
        inputs = [batch(8, 128, vocab, seed=1, ragged=True), batch(4, 512, vocab, 2, True)]
        if model_name == "all-MiniLM-L6-v2":
            inputs[1] = batch(4, 256, vocab, 2, True)  # its max_seq_length
        cpu = load_engine(model_dir, cache, provider="cpu")
        reference = [pooled(cpu, x) for x in inputs]
        cpu.close()
        for variant in variants:
            print(f"  parity {model_name} {variant}", flush=True)
            try:
                engine = load_engine(model_dir, cache, **GPU_VARIANTS[variant])
            except Exception as exc:
                results.append({"model": model_name, "engine": variant, "skipped": str(exc)})
                continue
            bound = MIN_COSINE_FP32 if variant in FP32_VARIANTS else MIN_COSINE
            row: dict[str, Any] = {"model": model_name, "engine": variant}
            session = getattr(engine, "session", None)
            if session is not None:  # the providers the session really runs on
                row["providers"] = session.get_providers()
            cosines = [
                min_cosine(on_worker(engine, x), ref)
                for x, ref in zip(inputs, reference, strict=True)
            ]
            engine.close()
            row.update(min_cosine=min(cosines), ok=min(cosines) >= bound)
            if variant.startswith("ort-cuda"):
                # again from the cache: the graph ONNX Runtime optimized for CUDA and saved
                # (Memcpy nodes in a saved CUDA graph may fail to load: onnxruntime #17837)
                try:
                    again = load_engine(model_dir, cache, **GPU_VARIANTS[variant])
                    reload = [
                        min_cosine(on_worker(again, x), ref)
                        for x, ref in zip(inputs, reference, strict=True)
                    ]
                    again.close()
                    row["reload_min_cosine"] = min(reload)
                    row["ok"] = row["ok"] and min(reload) >= bound
                except Exception as exc:
                    row.update(reload_error=str(exc), ok=False)
            results.append(row)
    return results


def throughput(
    model_dir: Path, variants: list[str], cache: Path, rows: int, lengths: list[int], repeats: int
) -> list[dict[str, Any]]:
    results = []
    for variant in [v for v in variants if v not in FP32_VARIANTS]:
        try:
            engine = load_engine(model_dir, cache, **GPU_VARIANTS[variant])
        except Exception as exc:
            results.append({"engine": variant, "skipped": str(exc)})
            continue
        for seq_len in lengths:
            x = batch(rows, seq_len, BERT_BASE["vocab_size"], seed=3, ragged=False)
            seconds = time_it(lambda e=engine, x=x: pooled(e, x), 3, repeats, 10)
            results.append(
                {"engine": variant, "seq_len": seq_len, "batch": rows, "seq_per_s": rows / seconds}
            )
        engine.close()
    results.extend(sentence_transformers_throughput(model_dir, rows, lengths, repeats))
    return results


def sentence_transformers_throughput(
    model_dir: Path, rows: int, lengths: list[int], repeats: int
) -> list[dict[str, Any]]:
    try:
        import torch
        from sentence_transformers import SentenceTransformer, models
    except ImportError as exc:
        return [{"engine": "sentence-transformers-fp16", "skipped": f"not installed: {exc}"}]
    if not torch.cuda.is_available():
        return [{"engine": "sentence-transformers-fp16", "skipped": "torch has no CUDA device"}]
    transformer = models.Transformer(str(model_dir), max_seq_length=512)
    pooling = models.Pooling(768, pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling], device="cuda").half().eval()
    results = []
    for seq_len in lengths:
        x = batch(rows, seq_len, BERT_BASE["vocab_size"], seed=3, ragged=False)
        features = {
            "input_ids": torch.from_numpy(x.input_ids).cuda(),
            "attention_mask": torch.from_numpy(x.attention_mask).cuda(),
            "token_type_ids": torch.from_numpy(np.zeros_like(x.input_ids)).cuda(),
        }

        def step(features: dict[str, Any] = features) -> None:
            with torch.inference_mode():
                model(dict(features))["sentence_embedding"].float().cpu()

        seconds = time_it(step, 3, repeats, 10)
        results.append(
            {
                "engine": "sentence-transformers-fp16",
                "seq_len": seq_len,
                "batch": rows,
                "seq_per_s": rows / seconds,
            }
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--engines", default=",".join(GPU_VARIANTS), help="comma-separated")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-lens", default="128,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()

    env = environment()
    print(json.dumps(env, indent=2), flush=True)
    variants = [v for v in args.engines.split(",") if v]
    if env.get("tensorrt") is None:
        variants = [v for v in variants if not v.startswith("tensorrt")]
        print("tensorrt is not installed: its checks are skipped", flush=True)
    with tempfile.TemporaryDirectory(prefix="tei-ort-gpu-check-") as tmp:
        root = Path(tmp)
        cache = root / "engines"
        bert_base = write_bert_base(root / "bert-base")
        models = {"all-MiniLM-L6-v2": default_model_path(), "bert-base (random)": bert_base}
        print("parity (float16 GPU vs float32 CPU, mean-pooled cosine)", flush=True)
        parity = check_parity(models, variants, cache)
        speed: list[dict[str, Any]] = []
        if not args.skip_throughput:
            print("throughput", flush=True)
            lengths = [int(n) for n in args.seq_lens.split(",")]
            speed = throughput(bert_base, variants, cache, args.batch, lengths, args.repeats)
    report = {"environment": env, "parity": parity, "throughput": speed}
    for error in env["stack"]["errors"]:
        print("stack", error)
    for row in parity:
        print("parity", json.dumps(row))
    for row in speed:
        print("throughput", json.dumps(row))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    failed = [row for row in parity if row.get("ok") is False]
    return 1 if failed or env["stack"]["errors"] else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
