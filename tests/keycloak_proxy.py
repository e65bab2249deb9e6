"""A real HTTP proxy on 127.0.0.1 in front of the real Keycloak, for fault injection in tests:
chosen admin requests are held until released, answered with an error without reaching
Keycloak, or forwarded and their answer lost (the connection closed unanswered). Everything else
is forwarded as is. Point `settings.KEYCLOAK_URL` at `url` (the `keycloak_proxy` fixture does);
tokens still come from Keycloak itself (KEYCLOAK_TOKEN_URL)."""
import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


@dataclass
class Rule:
    method: str
    path: str              # a regular expression searched in the request's path (with its query)
    action: str            # "hold", "answer" (without reaching Keycloak), "drop" (forward, then lose the answer)
    body: str = ""         # the request's body must contain this
    times: int = 1         # how many requests it applies to (0: every one)
    status: int = 503
    answer: bytes = b""
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    seen: int = 0

    def matches(self, method, path, body):
        return (method == self.method and re.search(self.path, path) is not None
                and self.body.encode() in body and (self.times == 0 or self.seen < self.times))


class KeycloakProxy:
    def __init__(self, upstream):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.rules = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rule = proxy._rule_for(self.command, self.path, body)
                if rule is not None and rule.action == "hold":
                    rule.arrived.set()
                    rule.release.wait(60)
                if rule is not None and rule.action == "answer":
                    self.send_response(rule.status)
                    self.send_header("Content-Length", str(len(rule.answer)))
                    self.end_headers()
                    self.wfile.write(rule.answer)
                    return
                status, headers, payload = proxy._forward(self.command, self.path, self.headers, body)
                if rule is not None and rule.action == "drop":
                    self.close_connection = True  # Keycloak did it; its answer is lost on the way back
                    return
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _rule_for(self, method, path, body):
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, body):
                    rule.seen += 1
                    return rule
        return None

    def _forward(self, method, path, headers, body):
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
            forwarded["Host"] = f"{self.upstream_host}:{self.upstream_port}"  # Keycloak checks the token's issuer host
            connection.request(method, path, body=body or None, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def add(self, method, path, action, **kwargs):
        rule = Rule(method, path, action, **kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self):
        with self._lock:
            for rule in self.rules:
                rule.release.set()
            self.rules = []

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.clear()
        self.server.shutdown()
        self.server.server_close()
