"""The requests every front end hands to the shared handlers (``handlers.Handlers``).

HTTP builds them from JSON bodies (``tei_ort.http.schemas``), gRPC from its messages
(``tei_ort.grpc.service``), so both are validated and answered by the same code.
``truncate`` None means the server's ``--auto-truncate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tei_ort.model.tokenization import Direction
from tei_ort.serving.embedding_types import EmbeddingType, EncodingFormat, VectorDtype
from tei_ort.serving.encoding import Item
from tei_ort.serving.late_chunking import Chunking


@dataclass(frozen=True)
class EmbedRequest:
    inputs: list[Item]
    single: bool
    truncate: bool | None = None
    truncation_direction: Direction = "right"
    prompt_name: str | None = None
    normalize: bool = True
    dimensions: int | None = None
    # tei-ort: the types to answer (``handlers.TypedEmbeddings``); empty: float32 (N, D)
    embedding_types: tuple[EmbeddingType, ...] = ()
    # tei-ort: base64 of each vector's bytes (/embed), of each input's matrix (/embed_all)
    encoding_format: EncodingFormat = "float"
    # tei-ort, late-interaction models (ColBERT, BGE-M3)
    query: bool = False  # `"input_type": "query"`: encode as queries, not documents
    embedding_dtype: VectorDtype = "float32"  # multi-vector answers (/embed_all)
    # /embed `outputs` (BGE-M3): any of "dense", "sparse", "multi_vector", one engine pass
    outputs: tuple[str, ...] | None = None
    # /embed `chunks` (and `late`): one vector per chunk of each input (late chunking)
    chunking: Chunking | None = None


@dataclass(frozen=True)
class PredictRequest:
    inputs: list[str | tuple[str, str]]
    single: bool
    truncate: bool | None = None
    truncation_direction: Direction = "right"
    raw_scores: bool = False


@dataclass(frozen=True)
class RerankRequest:
    """TEI's /rerank (``texts``) or the Cohere / Jina / Dify form (``documents``)."""

    query: str
    texts: list[str]
    documents_form: bool = False  # answer {"results": [...]} instead of TEI's list
    truncate: bool | None = None
    truncation_direction: Direction = "right"
    raw_scores: bool = False
    return_text: bool = False  # TEI: `return_text`; Cohere/Jina: `return_documents`
    top_n: int | None = None
    model: str | None = None
    instruction: str | None = None  # tei-ort: the task line of prompt-template re-rankers
    # tei-ort, BGE-M3: score by (w_dense, w_sparse, w_colbert) instead of MaxSim alone
    hybrid_weights: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class SimilarityRequest:
    source_sentence: str
    sentences: list[str]
    truncate: bool | None = None
    truncation_direction: Direction = "right"
    prompt_name: str | None = None


@dataclass(frozen=True)
class TokenizeRequest:
    inputs: list[str]
    single: bool
    add_special_tokens: bool = True
    prompt_name: str | None = None


@dataclass(frozen=True)
class DecodeRequest:
    ids: list[list[int]]
    single: bool
    skip_special_tokens: bool = True


@dataclass(frozen=True)
class OpenAIRequest:
    inputs: list[Item]
    single: bool
    model: str | None = None
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None
    embedding_type: EmbeddingType = EmbeddingType.FLOAT  # tei-ort's extension
