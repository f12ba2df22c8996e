"""The serving part shared by the local stack's fake peers (WeCom, the door gateway)."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any


class LoopbackPeer:
    """Serves a fake peer over HTTP on loopback, in a daemon thread.

    A subclass sets ``peer_name`` and ``_address`` (host, port; port 0 picks a free one) and builds
    its server in :meth:`_make_server`.
    """

    peer_name = "peer"
    _address: tuple[str, int]
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def _make_server(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> str:
        """Serve in a daemon thread; returns the base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._server = self._make_server()
        # A short poll interval keeps stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self.peer_name, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"
