"""An HTTP proxy in front of moto that fails chosen AWS actions, as AWS would (throttling, access denied),
or holds them (a slow S3), or rewrites their answers.

moto answers every call; natflow must also survive the answers AWS gives under load or with a
missing IAM permission. Requests whose `Action=` (query protocol) or `X-Amz-Target` (JSON protocol)
names a faulty action get the error; S3's REST requests are named GetObject (a GET of a key) or by
their method. Held actions wait until `release`. Everything else is forwarded to moto unchanged,
except the successful answers of actions given a rewrite (for what moto cannot represent, such as a
regional NAT Gateway).
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Self

# error code -> the HTTP status AWS answers it with
ERRORS = {
    "UnauthorizedOperation": 403,
    "AccessDenied": 403,
    "RequestLimitExceeded": 503,
    "ThrottlingException": 400,
}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: dict[str, tuple[str, int | None]] = {}
        self.failed: dict[str, int] = {}
        self.held: dict[str, int] = {}  # action -> requests waiting now
        self._holding: set[str] = set()
        self._released = threading.Condition()
        self.rewrites: dict[str, Callable[[bytes], bytes]] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy._action(self.headers.get("X-Amz-Target"), body, self.path, self.command)
                proxy._wait_if_held(action)
                fault = proxy._take_fault(action)
                if fault is not None:
                    status = ERRORS[fault]
                    payload = (
                        f"<Response><Errors><Error><Code>{fault}</Code><Message>injected {fault} for {action}"
                        f"</Message></Error></Errors><RequestID>fault</RequestID></Response>"
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                request = urllib.request.Request(proxy.upstream + self.path, data=body or None, method=self.command)
                for name, value in self.headers.items():
                    if name.lower() not in ("host", "content-length"):
                        request.add_header(name, value)
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, headers, data = response.status, response.headers.items(), response.read()
                except urllib.error.HTTPError as error:
                    status, headers, data = error.code, error.headers.items(), error.read()
                rewrite = proxy.rewrites.get(action)
                if rewrite is not None and status == 200:
                    data = rewrite(data)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _relay

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @staticmethod
    def _action(target: str | None, body: bytes, path: str, method: str = "GET") -> str:
        if target:
            return target.rsplit(".", 1)[-1]
        query = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if body else {}
        query = query or urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        if "Action" in query:
            return query["Action"][0]
        parts = urllib.parse.urlsplit(path).path.strip("/").split("/")
        if method == "GET" and len(parts) >= 2:  # S3, path style: /bucket/key
            return "GetObject"
        return ""

    def _wait_if_held(self, action: str) -> None:
        with self._released:
            if action not in self._holding:
                return
            self.held[action] = self.held.get(action, 0) + 1
            self._released.wait_for(lambda: action not in self._holding, timeout=300)
            self.held[action] -= 1

    def hold(self, action: str) -> None:
        """Requests for `action` wait (a slow S3) until `release`."""
        with self._released:
            self._holding.add(action)

    def release(self) -> None:
        with self._released:
            self._holding.clear()
            self._released.notify_all()

    def rewrite(self, action: str, change: Callable[[bytes], bytes]) -> None:
        """Answer `action` with `change` applied to moto's successful answer body."""
        with self._lock:
            self.rewrites[action] = change

    def _take_fault(self, action: str) -> str | None:
        with self._lock:
            fault = self.faults.get(action)
            if fault is None:
                return None
            code, remaining = fault
            if remaining is not None:
                if remaining <= 0:
                    return None
                self.faults[action] = (code, remaining - 1)
            self.failed[action] = self.failed.get(action, 0) + 1
            return code

    def fail(self, action: str, code: str, times: int | None = None) -> None:
        with self._lock:
            self.faults[action] = (code, times)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.failed.clear()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
