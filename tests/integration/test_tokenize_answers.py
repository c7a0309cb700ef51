"""/tokenize answers are bounded (all inputs together at most max_input_length x 250
tokens) and built off the event loop, so that a big one does not stall /health."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tei_ort.errors import ValidationError
from tei_ort.http.app import create_app
from tei_ort.serving.validation import MAX_CHAR_MULTIPLIER
from tests.support.app import serve, settings

pytestmark = pytest.mark.anyio

MAX_INPUT_LENGTH = 256
TOKEN_LIMIT = MAX_INPUT_LENGTH * MAX_CHAR_MULTIPLIER  # 64,000
WORDS = 12_000
#: 60 KB, under the character limit: 12,002 tokens with [CLS] and [SEP] ("word" is one)
LONG = "word " * WORDS
#: a /health answer slower than this is a stalled event loop
HEALTH_BOUND_S = 0.25


async def test_tokens_of_a_request_are_bounded(make_model: Any) -> None:
    app = create_app(settings(), make_model(max_input_length=MAX_INPUT_LENGTH))
    async with serve(app) as client:
        one = await client.post("/tokenize", json={"inputs": LONG})
        assert one.status_code == 200
        (tokens,) = one.json()
        assert len(tokens) == WORDS + 2
        assert tokens[1]["text"] == "word" and tokens[1]["special"] is False
        assert tokens[1]["start"] == 0 and tokens[1]["stop"] == 4
        # 32 x 60 KB: 384,064 tokens, a ~40 MB answer
        response = await client.post("/tokenize", json={"inputs": [LONG] * 32})
        assert response.status_code == ValidationError.status_code, response.status_code
        error = response.json()
        assert error["error_type"] == "Validation"
        assert str(TOKEN_LIMIT) in error["error"] and "tokenize" in error["error"]
        five = await client.post("/tokenize", json={"inputs": [LONG] * 5})  # 60,010 tokens
        assert five.status_code == 200 and [len(r) for r in five.json()] == [len(tokens)] * 5
        six = await client.post("/tokenize", json={"inputs": [LONG] * 6})  # 72,012 tokens
        assert six.status_code == ValidationError.status_code


async def test_health_does_not_stall_while_big_answers_are_built(make_model: Any) -> None:
    app = create_app(settings(), make_model(max_input_length=MAX_INPUT_LENGTH))
    async with serve(app) as client:
        await client.get("/health")
        stop = asyncio.Event()
        latencies: list[float] = []

        async def poll_health() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                assert (await client.get("/health")).status_code == 200
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.005)

        poller = asyncio.ensure_future(poll_health())
        big = [
            client.post("/tokenize", json={"inputs": [LONG] * count}) for count in (32, 5, 5, 32)
        ]
        codes = [r.status_code for r in await asyncio.gather(*big)]
        stop.set()
        await poller
    assert len(latencies) >= 3
    assert max(latencies) < HEALTH_BOUND_S, sorted(latencies)[-5:]
    assert codes == [ValidationError.status_code, 200, 200, ValidationError.status_code]
