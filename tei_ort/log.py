"""Logging set-up: TEI-like text lines, or one JSON object per line (``--json-output``).

A JSON line written while a request span is active (tracing on, see tracing.py) carries
its ``trace_id`` and ``span_id`` (hex, as tracing backends show them), so logs and traces
can be joined.
"""

from __future__ import annotations

import datetime
import logging
import sys

import orjson
from opentelemetry import trace

from tei_ort.settings import log_level


class JsonFormatter(logging.Formatter):
    """``{"timestamp", "level", "message", "target"}`` per line, as TEI's JSON logs."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat()
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "message": record.getMessage(),
            "target": record.name,
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(json_output: bool = False, level: str | None = None) -> None:
    """Configure the root logger (and uvicorn's, which then propagate to it)."""
    level = (level or log_level()).upper()
    handler = logging.StreamHandler(sys.stdout)
    if json_output:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)5s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level)
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
