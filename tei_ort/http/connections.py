"""Deadlines and a cap for client connections, on top of uvicorn's h11 protocol.

uvicorn closes a kept-alive connection that stays idle (``--keep-alive-timeout``), but a
connection that never completes its request headers, or stops halfway through its body,
stays open for as long as the client likes, and only the file-descriptor limit bounds how
many there are. Here every connection must deliver its request line and headers within
``--header-read-timeout`` (of opening, or of the previous answer) and its body within
``--body-read-timeout`` of the headers, or it is closed; past ``--max-connections`` open
connections, new ones are closed as soon as they are accepted.

A body cut off this way reaches the application as a client disconnect, like a client
that went away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    header_read_timeout: float
    body_read_timeout: float
    max_connections: int


def limited_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``limits`` (pass it as ``uvicorn.Config(http=...)``)."""

    class LimitedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _timed_cycle: RequestResponseCycle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                logger.debug("connection refused: %d open", len(self.connections) - 1)
                transport.close()
                return
            self._arm(limits.header_read_timeout, self._on_header_deadline)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                return
            if cycle is not self._timed_cycle:  # headers complete: the body's clock starts
                self._timed_cycle = cycle
                if cycle.more_body:
                    self._arm(limits.body_read_timeout, self._on_body_deadline)
                else:
                    self._disarm()
            elif not cycle.more_body:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():  # the next request's headers, if any
                self._arm(limits.header_read_timeout, self._on_header_deadline)

        def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, callback)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _on_header_deadline(self) -> None:
            self._timer = None
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return  # a request is being read or answered
            self._close("request headers not received in time")

        def _on_body_deadline(self) -> None:
            self._timer = None
            cycle = self.cycle
            if cycle is self._timed_cycle and cycle is not None and cycle.more_body:
                self._close("request body not received in time")

        def _close(self, why: str) -> None:
            if not self.transport.is_closing():
                client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
                logger.info("closing the connection of %s: %s", client, why)
                self.transport.close()

    return LimitedH11Protocol
