"""A real HTTP receiver on 127.0.0.1 for the webhook tests: it records what arrives and answers as told.

``Receiver.behaviour`` says how: "ok" (200), "error" (500), "hang" (reads the request, never answers
until the test ends), "redirect" (302 to ``redirect_to``), "big" (200 with a megabyte of body) and
"drip" (a 200 status line, then a byte every 0.2 s, never finishing).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.behaviour = "ok"
        self.redirect_to = ""
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                receiver.answer(self)

            def log_message(self, *args) -> None:
                pass  # quiet: pytest shows what matters

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        if self.behaviour == "hang":
            self.released.wait(30)
            return
        if self.behaviour == "drip":
            handler.send_response(200)
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            for _ in range(150):
                if self.released.wait(0.2):
                    return
                try:
                    handler.wfile.write(b"x")
                    handler.wfile.flush()
                except OSError:
                    return
            return
        status, body, headers = {
            "ok": (200, b'{"received": true}', {}),
            "error": (500, b"receiver broke: " + b"e" * 5000, {}),
            "redirect": (302, b"", {"Location": self.redirect_to}),
            "big": (200, b"y" * 1_000_000, {}),
        }[self.behaviour]
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(OSError):  # the client read what it wanted and left
            handler.wfile.write(body)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
