"""The benchmark's S3 server: the library's moto harness in its own process, with counters.

``python -m documee_remote.testing.moto_server`` runs the same
:class:`~documee_remote.testing.moto_server.MotoServer`, but its request
counters live in that process where nobody can read them. This wrapper runs
the harness the same way (a subprocess, so moto's CPU does not share the
client's interpreter and GIL) and adds:

* a WSGI layer in front of the harness that counts requests by method and by
  status, and the body bytes received and sent;
* a control channel on stdin/stdout, one command per line:
  ``stats`` (prints the counters as JSON), ``latency <ms>``, ``reset``
  (moto forgets every bucket), ``quit``.

The first line printed is the endpoint URL. Used by :mod:`benchmarks.run`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from documee_remote.testing.moto_server import MotoServer

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CountingApp:
    """Counts every request that reaches the harness (moto's own API aside)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.methods: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self.app(environ, start_response)
        method = self.verb(environ)
        try:
            size_in = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size_in = 0

        def counting_start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            with self.lock:
                self.statuses[status.split(" ", 1)[0]] += 1
            return start_response(status, headers, *rest)

        with self.lock:
            self.methods[method] += 1
            self.bytes_in += size_in
        return self._count_out(self.app(environ, counting_start))

    def verb(self, environ: dict[str, Any]) -> str:
        """What a request counts as: its HTTP method."""
        return str(environ.get("REQUEST_METHOD", "GET")).upper()

    def _count_out(self, result: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in result:
                with self.lock:
                    self.bytes_out += len(chunk)
                yield chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "methods": dict(self.methods),
                "statuses": dict(self.statuses),
                "requests": sum(self.methods.values()),
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
            }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = MotoServer(port=args.port, latency_ms=args.latency_ms).start()
    # werkzeug's server calls self.app for every request: wrap the harness there.
    counting = CountingApp(server._server.app)
    server._server.app = counting
    print(server.endpoint_url, flush=True)
    try:
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "stats":
                print(json.dumps(counting.snapshot()), flush=True)
            elif cmd == "latency":
                server.faults.latency_ms = float(arg)
                print("ok", flush=True)
            elif cmd == "reset":
                server.reset()
                print("ok", flush=True)
            elif cmd == "quit":
                break
            else:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
