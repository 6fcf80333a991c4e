"""A webhook receiver for the demo: prints each event it gets and whether its signature verifies."""

from __future__ import annotations

import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand, CommandParser

from energypay.webhooks import demo, signing

TOLERANCE_SECONDS = 300  # as the Standard Webhooks libraries: an older timestamp is a replay


def verified(secret: str, headers, body: bytes) -> bool:
    """The receiver's side of the signature: any of the space-separated signatures matches, and the time is recent."""
    message_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not (message_id and timestamp.isdigit()) or abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = signing.signature(secret, message_id, int(timestamp), body)
    return any(hmac.compare_digest(expected, given) for given in headers.get("webhook-signature", "").split(" "))


class Command(BaseCommand):
    help = "webhook_receiver [--port 8001]: receives the demo's webhooks on 127.0.0.1 and prints each one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=demo.DEMO_PORT)

    def handle(self, *args, port: int, **options) -> None:
        command = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 1024 * 1024))
                command.show(self.headers, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"received": true}')

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.stdout.write(f"Webhook receiver listening on {demo.demo_url(port)} (secret from {demo.secret_file()}).")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

    def show(self, headers, body: bytes) -> None:
        try:
            ok = verified(demo.read_secret(), headers, body)
        except OSError:
            ok = False
        try:
            event = json.loads(body)
            what = f"{event.get('type')} {json.dumps(event.get('data'), sort_keys=True)[:200]}"
        except ValueError:
            what = f"{len(body)} bytes that are not JSON"
        state = "signature verified" if ok else "SIGNATURE DID NOT VERIFY"
        self.stdout.write(f"webhook {headers.get('webhook-id', '?')}: {what} ({state})")
