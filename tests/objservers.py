"""Real object-store servers on the loopback, for the object-store tests and the bench.

- :class:`S3Server`: moto in server mode (``ThreadedMotoServer``), a real HTTP
  S3 API. Its data live in this process, so the server can be stopped and
  started again on the same port with the bucket intact (an outage, not a loss).
- :class:`GCSServer`: ``gcp-storage-emulator``, a real HTTP GCS JSON API, as a
  child process (in memory).
- :class:`Proxy`: a small HTTP proxy in front of either; it counts requests
  (the cost of a poll, seen from the server's side) and, while ``throttle`` is
  set, answers 503 SlowDown (or 429) instead of forwarding (throttling, injected).

Clients find them through the libraries' own environment:
``AWS_ENDPOINT_URL`` (botocore, so s3fs) and ``STORAGE_EMULATOR_HOST`` (gcsfs).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: gcsfs >= 2026.10 asks a gRPC control API for each bucket's type (60 s timeout a call); the emulator has
#: none. Set before gcsfs is imported anywhere in this process.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


class S3Server:
    """moto's S3 API on 127.0.0.1:PORT; ``stop()`` and ``start()`` again keep the data."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint or self.endpoint}

    def filesystem(self, endpoint: str | None = None) -> Any:
        import s3fs

        return s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint or self.endpoint,
                                 skip_instance_cache=True, use_listings_cache=False)


class GCSServer:
    """gcp-storage-emulator on 127.0.0.1:PORT (in memory), with bucket ``default_bucket``."""

    #: gcsfs >= 2026.10 asks a gRPC control API for the bucket type (60 s timeout per call); the emulator has none.
    CLIENT_ENV = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def __init__(self, default_bucket: str = "bucket", port: int | None = None) -> None:
        self.port = port or free_port()
        self.default_bucket = default_bucket
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GCSServer:
        emulator = Path(sys.executable).parent / "gcp-storage-emulator"
        self.proc = subprocess.Popen(
            [str(emulator), "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory",
             "--default-bucket", self.default_bucket],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": endpoint or self.endpoint, **self.CLIENT_ENV}

    def filesystem(self, endpoint: str | None = None) -> Any:
        os.environ.update(self.CLIENT_ENV)
        os.environ["STORAGE_EMULATOR_HOST"] = endpoint or self.endpoint
        import gcsfs

        return gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)


_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
_TOO_MANY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>TooManyRequests</Code>'
             b"<Message>Too many requests.</Message></Error>")


class Proxy:
    """An HTTP proxy on the loopback in front of ``target_port``: counts requests, injects 503 SlowDown."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.requests = 0
        self.throttled = 0
        self.throttle = threading.Event()
        #: What a throttled request gets: 503 SlowDown (S3's) or 429 TooManyRequests (GCS's code; s3fs
        #: does not retry it itself, so each look of the watcher is one request).
        self.throttle_status = 503
        self.log: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests += 1
                    proxy.log.append(f"{self.command} {self.path}")
                if proxy.throttle.is_set():
                    with proxy._lock:
                        proxy.throttled += 1
                    body = _SLOWDOWN if proxy.throttle_status == 503 else _TOO_MANY
                    self.send_response(proxy.throttle_status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                # a HEAD's Content-Length is the object's size (no body follows)
                length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self) -> int:
        with self._lock:
            return self.requests

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
