"""A small fault-injecting HTTP proxy for the AWS tests: it sits in front of the local AWS endpoint
and answers chosen requests with throttling, 5xx errors or a dropped connection instead of
forwarding them."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

# A rule sees (method, path, headers, n) — n counts the requests the rule matched so far, from 1 —
# and returns a fault name or None.
Rule = Callable[[str, str, dict, int], "str | None"]

FAULTS = {
    # JSON protocols (CloudWatch Logs, Glue, Athena, KMS): throttling is a 400 with its error type.
    "throttle": (400, "application/x-amz-json-1.1", json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})),
    # S3 speaks XML.
    "slowdown": (503, "application/xml", "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
    "500": (500, "application/x-amz-json-1.1", json.dumps({"__type": "InternalFailure", "message": "injected"})),
}


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.rules: list[tuple[Callable[[str, str, dict], bool], Rule]] = []
        self.counts: dict[int, int] = {}
        # Called with (method, path, headers, body) before a request is forwarded.
        self.hooks: list[Callable[[str, str, dict, bytes], None]] = []
        # Called with (method, path, headers, body, forward); may answer in place of the endpoint
        # (status, headers, body), using forward(body) -> (status, headers, body) to ask it.
        self.rewriters: list[Callable] = []
        self.injected: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                for hook in list(proxy.hooks):
                    hook(self.command, self.path, headers, body)
                fault = proxy.decide(self.command, self.path, headers)
                if fault == "drop":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                if fault:
                    status, ctype, text = FAULTS[fault]
                    data = text.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                def forward(payload: bytes):
                    conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                    h = {k: v for k, v in headers.items() if k.lower() != "content-length"}
                    h["Content-Length"] = str(len(payload))
                    conn.request(self.command, self.path, body=payload, headers=h)
                    resp = conn.getresponse()
                    data = resp.read()
                    conn.close()
                    return resp.status, resp.getheaders(), data

                answer = None
                for rewrite in list(proxy.rewriters):
                    answer = rewrite(self.command, self.path, headers, body, forward)
                    if answer is not None:
                        break
                status, rheaders, data = answer if answer is not None else forward(body)
                self.send_response(status)
                length = str(len(data))
                for k, v in rheaders:
                    if k.lower() == "content-length" and self.command == "HEAD":
                        length = v  # a HEAD answer has no body but tells the object's size
                    elif k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, matches: Callable[[str, str, dict], bool], rule: Rule) -> None:
        with self.lock:
            self.rules.append((matches, rule))

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()
            self.counts.clear()

    def decide(self, method: str, path: str, headers: dict) -> str | None:
        with self.lock:
            for i, (matches, rule) in enumerate(self.rules):
                if matches(method, path, headers):
                    self.counts[i] = self.counts.get(i, 0) + 1
                    fault = rule(method, path, headers, self.counts[i])
                    if fault:
                        self.injected.append(fault)
                    return fault
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def target(name: str) -> Callable[[str, str, dict], bool]:
    """Matches JSON-protocol calls of one operation (`Logs_20140328.FilterLogEvents`)."""
    return lambda m, p, h: name in (h.get("X-Amz-Target") or h.get("x-amz-target") or "")


def s3_writes(bucket: str) -> Callable[[str, str, dict], bool]:
    return lambda m, p, h: m in ("PUT", "POST") and p.startswith(f"/{bucket}/")
