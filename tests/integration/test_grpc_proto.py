"""tei.proto: the checked-in generated code matches it, and it matches TEI's wire interface.

The wire table below is TEI 1.9's ``tei.v1`` (services, methods and their streaming kinds,
messages with field numbers, types and labels): a client built on TEI's own .proto must
interoperate, so any drift here is a compatibility break.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from tei_ort.proto import PROTO_PATH, tei_pb2

GENERATED = ("tei_pb2.py", "tei_pb2.pyi", "tei_pb2_grpc.py")
REGENERATE = (
    "python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. "
    "tei_ort/proto/tei.proto"
)

# service -> method -> (request, response, client streaming, server streaming)
SERVICES = {
    "Info": {"Info": ("InfoRequest", "InfoResponse", False, False)},
    "Embed": {
        "Embed": ("EmbedRequest", "EmbedResponse", False, False),
        "EmbedStream": ("EmbedRequest", "EmbedResponse", True, True),
        "EmbedSparse": ("EmbedSparseRequest", "EmbedSparseResponse", False, False),
        "EmbedSparseStream": ("EmbedSparseRequest", "EmbedSparseResponse", True, True),
        "EmbedAll": ("EmbedAllRequest", "EmbedAllResponse", False, False),
        "EmbedAllStream": ("EmbedAllRequest", "EmbedAllResponse", True, True),
    },
    "Predict": {
        "Predict": ("PredictRequest", "PredictResponse", False, False),
        "PredictPair": ("PredictPairRequest", "PredictResponse", False, False),
        "PredictStream": ("PredictRequest", "PredictResponse", True, True),
        "PredictPairStream": ("PredictPairRequest", "PredictResponse", True, True),
    },
    "Rerank": {
        "Rerank": ("RerankRequest", "RerankResponse", False, False),
        "RerankStream": ("RerankStreamRequest", "RerankResponse", True, False),
    },
    "Tokenize": {
        "Tokenize": ("EncodeRequest", "EncodeResponse", False, False),
        "TokenizeStream": ("EncodeRequest", "EncodeResponse", True, True),
        "Decode": ("DecodeRequest", "DecodeResponse", False, False),
        "DecodeStream": ("DecodeRequest", "DecodeResponse", True, True),
    },
}

# message -> "number [opt|rep] type name; ..." (TEI_GRPC.md's notation)
MESSAGES = {
    "InfoRequest": "",
    "InfoResponse": "1 string version; 2 opt string sha; 3 opt string docker_label; "
    "4 string model_id; 5 opt string model_sha; 6 string model_dtype; "
    "7 ModelType model_type; 8 uint32 max_concurrent_requests; 9 uint32 max_input_length; "
    "10 uint32 max_batch_tokens; 11 opt uint32 max_batch_requests; "
    "12 uint32 max_client_batch_size; 13 uint32 tokenization_workers",
    "Metadata": "1 uint32 compute_chars; 2 uint32 compute_tokens; 3 uint64 total_time_ns; "
    "4 uint64 tokenization_time_ns; 5 uint64 queue_time_ns; 6 uint64 inference_time_ns",
    "EmbedRequest": "1 string inputs; 2 bool truncate; 3 opt bool normalize; "
    "4 TruncationDirection truncation_direction; 5 opt string prompt_name; "
    "6 opt uint32 dimensions",
    "EmbedResponse": "1 rep float embeddings; 2 Metadata metadata",
    "EmbedSparseRequest": "1 string inputs; 2 bool truncate; "
    "3 TruncationDirection truncation_direction; 4 opt string prompt_name",
    "SparseValue": "1 uint32 index; 2 float value",
    "EmbedSparseResponse": "1 rep SparseValue sparse_embeddings; 2 Metadata metadata",
    "EmbedAllRequest": "1 string inputs; 2 bool truncate; "
    "3 TruncationDirection truncation_direction; 4 opt string prompt_name",
    "TokenEmbedding": "1 rep float embeddings",
    "EmbedAllResponse": "1 rep TokenEmbedding token_embeddings; 2 Metadata metadata",
    "PredictRequest": "1 string inputs; 2 bool truncate; 3 bool raw_scores; "
    "4 TruncationDirection truncation_direction",
    "PredictPairRequest": "1 rep string inputs; 2 bool truncate; 3 bool raw_scores; "
    "4 TruncationDirection truncation_direction",
    "Prediction": "1 float score; 2 string label",
    "PredictResponse": "1 rep Prediction predictions; 2 Metadata metadata",
    "RerankRequest": "1 string query; 2 rep string texts; 3 bool truncate; 4 bool raw_scores; "
    "5 bool return_text; 6 TruncationDirection truncation_direction",
    "Rank": "1 uint32 index; 2 opt string text; 3 float score",
    "RerankStreamRequest": "1 string query; 2 string text; 3 bool truncate; "
    "4 bool raw_scores; 5 bool return_text; 6 TruncationDirection truncation_direction",
    "RerankResponse": "1 rep Rank ranks; 2 Metadata metadata",
    "EncodeRequest": "1 string inputs; 2 bool add_special_tokens; 3 opt string prompt_name",
    "SimpleToken": "1 uint32 id; 2 string text; 3 bool special; 4 opt uint32 start; "
    "5 opt uint32 stop",
    "EncodeResponse": "1 rep SimpleToken tokens",
    "DecodeRequest": "1 rep uint32 ids; 2 bool skip_special_tokens",
    "DecodeResponse": "1 string text",
}

ENUMS = {
    "ModelType": {
        "MODEL_TYPE_EMBEDDING": 0,
        "MODEL_TYPE_CLASSIFIER": 1,
        "MODEL_TYPE_RERANKER": 2,
    },
    "TruncationDirection": {"TRUNCATION_DIRECTION_RIGHT": 0, "TRUNCATION_DIRECTION_LEFT": 1},
}

# tei-ort's additions: optional fields numbered after TEI's, which TEI's clients never set
# (proto3 skips unknown fields, so either side of a mixed pair still interoperates)
EXTENSIONS = {"EmbedAllRequest": "5 opt string input_type"}

_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_FLOAT: "float",
}


def _describe(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        kind = field.message_type.name
    elif field.type == FieldDescriptor.TYPE_ENUM:
        kind = field.enum_type.name
    else:
        kind = _SCALARS[field.type]
    label = ""
    if field.is_repeated:
        label = "rep "
    elif field.has_presence and field.type != FieldDescriptor.TYPE_MESSAGE:
        label = "opt "  # proto3 `optional`
    return f"{field.number} {label}{kind} {field.name}"


def test_package_services_and_methods_are_teis() -> None:
    descriptor = tei_pb2.DESCRIPTOR
    assert descriptor.package == "tei.v1"
    found = {
        service.name: {
            method.name: (
                method.input_type.name,
                method.output_type.name,
                method.client_streaming,
                method.server_streaming,
            )
            for method in service.methods
        }
        for service in descriptor.services_by_name.values()
    }
    assert found == SERVICES


def test_messages_and_enums_are_teis() -> None:
    descriptor = tei_pb2.DESCRIPTOR
    found = {
        name: "; ".join(_describe(field) for field in message.fields)
        for name, message in descriptor.message_types_by_name.items()
    }
    expected = {
        name: "; ".join(part for part in (fields, EXTENSIONS.get(name, "")) if part)
        for name, fields in MESSAGES.items()
    }
    assert found == expected
    enums = {
        name: {value.name: value.number for value in enum.values}
        for name, enum in descriptor.enum_types_by_name.items()
    }
    assert enums == ENUMS


def _normalized(text: str) -> str:
    """Generated code without the generator's version stamps (they follow grpcio-tools)."""
    text = re.sub(r"# Protobuf Python Version: .*", "", text)
    text = re.sub(r"ValidateProtobufRuntimeVersion\([^)]*\)", "", text)
    return re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "", text)


def test_checked_in_code_matches_the_proto(tmp_path: Path) -> None:
    import grpc_tools  # noqa: F401 - the test extra must install it

    proto_dir = tmp_path / "tei_ort" / "proto"
    proto_dir.mkdir(parents=True)
    shutil.copy(PROTO_PATH, proto_dir / "tei.proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{tmp_path}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(proto_dir / "tei.proto"),
        ],
        check=True,
        capture_output=True,
    )
    for name in GENERATED:
        fresh = _normalized((proto_dir / name).read_text())
        checked_in = _normalized((PROTO_PATH.parent / name).read_text())
        assert fresh == checked_in, f"{name} is stale: regenerate with `{REGENERATE}`"
