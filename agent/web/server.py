"""Serve the ASGI app with uvicorn in a thread of its own, on a socket bound up front.

Binding here, in the caller's thread, makes a taken address an ``OSError`` the caller
sees at once (uvicorn alone would log it and end its thread). ``stop`` asks uvicorn to
finish the requests in flight and waits for the thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

log = logging.getLogger("cadence.serve")


class Server:
    def __init__(self, app: Any, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(128)
        self.sock.set_inheritable(True)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.uvicorn.run, kwargs={"sockets": [self.sock]}, name="cadence-http",
            daemon=True,
        )  # fmt: skip

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self, wait: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + wait
        while not self.uvicorn.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                raise OSError("the HTTP server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=15)
        self.sock.close()
