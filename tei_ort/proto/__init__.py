"""TEI's gRPC interface: ``tei.proto`` (package ``tei.v1``) and the modules generated from it.

``tei_pb2`` (messages) and ``tei_pb2_grpc`` (client stubs and servicer bases) are produced
by ``grpc_tools.protoc`` and checked in; regenerate them from the repository root with::

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \\
        tei_ort/proto/tei.proto

``tests/integration/test_grpc_proto.py`` fails when they no longer match the .proto.
"""

from __future__ import annotations

from pathlib import Path

#: the .proto file, shipped as package data
PROTO_PATH = Path(__file__).with_name("tei.proto")
