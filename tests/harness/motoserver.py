"""moto in server mode on loopback: AWS APIs for code that builds its own boto3 clients.

Subprocesses (the operator, the CLI) reach it through `env()`; boto3 honours AWS_ENDPOINT_URL.
In-process code passes `endpoint_url=server.endpoint_url` or sets the same variables.
"""

from __future__ import annotations

import urllib.request
from types import TracebackType
from typing import Self

from moto.server import ThreadedMotoServer

REGION = "us-east-1"


class MotoServer:
    def __init__(self) -> None:
        # Port 0: the OS picks a free port at bind time, so there is no race with other servers.
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every AWS resource (all services, all regions)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        # No ProxyHandler from the environment: the server is on loopback.
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
            response.read()

    def env(self) -> dict[str, str]:
        """Environment for a subprocess whose boto3 must talk to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
