"""A fake HTTP server on a loopback address for the LLM-client tests (tests/test_planner.py,
tests/test_hostile_cli.py): answers every POST with `handle(handler)` and records each request."""

from __future__ import annotations

import http.server
import threading


class FakeServer:
    """An HTTP server on `host`, answering every POST with `handle(handler)`; records requests
    (path, headers, body bytes)."""

    def __init__(self, host: str, handle):
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": self.rfile.read(length)})
                handle(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
