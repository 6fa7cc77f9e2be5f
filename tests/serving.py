"""What the API tests and the API benchmarks share: a real ``shoprec serve`` process on a free
loopback port, and a small HTTP client (the standard library's)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, body: Any = None, method: str | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; 4xx/5xx are answers, not exceptions."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Server:
    """``shoprec serve`` as its own process (``command``: its command line, without --port)."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env or dict(os.environ),
        )

    def wait(self, ready: bool = True, timeout: float = 90.0) -> dict:
        """Until /health answers (200 when ``ready``, any answer otherwise)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"shoprec serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                status, body = call(self.url + "/health")
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200 or not ready:
                return body
            time.sleep(0.1)
        raise AssertionError(f"shoprec serve not ready in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
