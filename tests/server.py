"""A real HTTP server on 127.0.0.1 for tests: routes, recorded requests, hostile answers.

with LocalServer() as srv:
    srv.route("/feed", body=b"<rss>...", headers={"ETag": '"v1"'})
    srv.route("/slow", handler=lambda req: Reply(200, chunks=drip(b"x" * 100, 0.5)))
    url = srv.url("/feed")
    srv.requests  # every request: method, path, headers, body, the client's port

LocalServer(tls=context) serves HTTPS with that (server-side) ssl.SSLContext.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: int = 0  # the client's port: requests with the same one came over one connection


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None  # streamed instead of body (no Content-Length)


def drip(data: bytes, interval: float, size: int = 1) -> Iterator[bytes]:
    """Yield `data` a few bytes at a time, pausing between pieces (a slow-loris server)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
        time.sleep(interval)


Handler = Callable[[Request], Reply]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up early (a byte cap, a deadline) is expected here."""


class _IPv6Server(_QuietServer):
    address_family = socket.AF_INET6


class LocalServer:
    def __init__(self, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None):
        self.host = host
        self.tls = tls
        self.routes: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.command, self.path, headers, body, self.client_address[1])
                with server._lock:
                    server.requests.append(req)
                    handler = server.routes.get(self.path) or server.routes.get(self.path.split("?")[0])
                reply = handler(req) if handler else Reply(404, b"not found")
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                try:
                    if reply.chunks is not None:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for chunk in reply.chunks:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        if self.command != "HEAD":
                            self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_HEAD = _serve

        server_class = _IPv6Server if ":" in host else _QuietServer
        self._server = server_class((host, 0), _Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(
        self,
        path: str,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        handler: Handler | None = None,
    ) -> None:
        if handler is None:
            fixed = Reply(status, body, dict(headers or {}))

            def handler(req: Request) -> Reply:
                return fixed

        with self._lock:
            self.routes[path] = handler

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]
