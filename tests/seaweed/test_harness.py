"""The SeaweedFS harness itself: a clear error where the binary cannot run, a clean stop."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from documee_remote.testing.seaweed import (
    BINARY_ENV,
    SeaweedServer,
    SeaweedUnavailableError,
    find_weed,
)


def _not_a_program(tmp_path: Path) -> Path:
    fake = tmp_path / "weed"
    fake.write_bytes(b"\x7fELF\x00 not for this machine")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def test_a_binary_that_cannot_run_is_reported_as_unavailable(tmp_path: Path) -> None:
    fake = _not_a_program(tmp_path)
    with pytest.raises(SeaweedUnavailableError, match="cannot run on this platform"):
        find_weed(fake)
    with pytest.raises(SeaweedUnavailableError, match="cannot run on this platform"):
        SeaweedServer(binary=fake).start()


def test_the_environment_variable_names_the_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BINARY_ENV, str(_not_a_program(tmp_path)))
    with pytest.raises(SeaweedUnavailableError, match=str(tmp_path)):
        find_weed()


def test_stop_kills_the_server_and_removes_its_directory(seaweed: SeaweedServer) -> None:
    # Uses the session's binary (skipped with it); a server of its own, stopped here.
    server = SeaweedServer("documee-harness").start()
    port = server.port
    workdir = server._workdir
    assert port is not None
    assert workdir is not None
    assert workdir.is_dir()
    assert server.running
    grpc_ports = list(server._grpc_ports)
    server.stop()
    server.stop()  # idempotent
    assert not server.running
    assert not workdir.exists()
    # weed's gRPC sockets in /tmp, whatever -dir says: removed too.
    for grpc_port in grpc_ports:
        assert list(Path("/tmp").glob(f"seaweedfs-*-grpc-{grpc_port}.sock")) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
