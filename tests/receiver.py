"""A real local webhook receiver for tests: answers from a script of statuses and verifies
every delivery with the Standard Webhooks reference library."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


class Receiver:
    def __init__(self, statuses=(), retry_after=None, hold=False, answer_bytes=0):
        self.statuses = list(statuses)  # answered in order; 200 once exhausted
        self.retry_after = retry_after
        self.answer_bytes = answer_bytes  # a response body of this many bytes
        # With `hold`, every request waits (after it arrived) until release() before it is answered.
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.waiting = []
        self.received = []  # (headers, payload, verified)
        self.secret = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                payload = Webhook(receiver.secret).verify(body, headers) if receiver.secret else json.loads(body)
                receiver.received.append((headers, payload))
                receiver.waiting.append(headers["webhook-id"])
                receiver.gate.wait(30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.retry_after and status in (429, 503):
                    self.send_header("Retry-After", str(receiver.retry_after))
                self.send_header("Content-Length", str(receiver.answer_bytes))
                self.end_headers()
                try:
                    for _ in range(receiver.answer_bytes // 65536):
                        self.wfile.write(b"x" * 65536)
                    self.wfile.write(b"x" * (receiver.answer_bytes % 65536))
                except OSError:
                    pass  # the client dropped the connection: what a bounded reader does

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=not-logged"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def release(self):
        self.gate.set()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
