"""Dependencies that stop answering, for timeout tests: a black hole and a TCP relay that can freeze.

`BlackHole` listens and never answers: the kernel completes the TCP handshake (the backlog), so a client
connects and then waits for a reply that never comes, as with a hung server or a dropped route.
`FreezableRelay` forwards to a real server until `freeze` is called; from then on it keeps every
connection open and drops every byte, so calls already connected hang the same way.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType


class BlackHole:
    """A listening socket on loopback that accepts nothing and answers nothing."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class FreezableRelay:
    """Relays loopback connections on `port` to ``target``; after `freeze` it swallows all traffic."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._server.getsockname()[1]
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._server.setblocking(False)
        self._selector.register(self._server, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="freezable-relay", daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        """From now on, read and drop everything in both directions (connections stay open)."""
        self._frozen.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server:
                    self._accept()
                else:
                    self._relay(sock)

    def _accept(self) -> None:
        client, _ = self._server.accept()
        upstream = socket.create_connection(self._target, timeout=5)
        for one, other in ((client, upstream), (upstream, client)):
            one.settimeout(5)  # recv is only called when the selector says readable; sends may block
            self._peers[one] = other
            self._selector.register(one, selectors.EVENT_READ)

    def _relay(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        if not self._frozen.is_set():
            with contextlib.suppress(OSError):
                self._peers[sock].sendall(data)

    def _drop(self, sock: socket.socket) -> None:
        other = self._peers.pop(sock, None)
        for one in (sock, other):
            if one is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(one)
                one.close()
        if other is not None:
            self._peers.pop(other, None)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        for sock in [*self._peers, self._server]:
            sock.close()
        self._selector.close()

    def __enter__(self) -> FreezableRelay:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
