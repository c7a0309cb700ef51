"""An app served by uvicorn on 127.0.0.1 in a thread of the test process (for clients that
need a real socket, such as schemathesis), and the floating-point environment hypothesis
needs."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


@contextlib.contextmanager
def live_server(app: ASGIApp, timeout: float = 60.0) -> Iterator[str]:
    """Serve ``app`` (lifespan on) on a loopback port and yield its base URL; stop it after.

    The socket is bound here and handed to uvicorn, so no other process can take the port
    between choosing and binding it.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


@contextlib.contextmanager
def ieee_floats() -> Iterator[None]:
    """The thread's default IEEE floating-point environment for a block, the previous one
    restored after. ONNX Runtime sessions made with ``session.set_denormal_as_zero`` (the
    engine's) turn on flush-to-zero for the thread that makes them; hypothesis then refuses
    to generate floats (it cannot represent subnormals)."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    saved = ctypes.create_string_buffer(256)  # a fenv_t (32 bytes on x86-64 glibc), with room
    if libm.fegetenv(saved) != 0:
        raise OSError("fegetenv failed")
    libm.fesetenv(ctypes.c_void_p(-1))  # glibc's FE_DFL_ENV
    try:
        yield
    finally:
        libm.fesetenv(saved)
