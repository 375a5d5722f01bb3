"""A fresh prefix of the session's SeaweedFS bucket per test, and its environment.

SeaweedFS makes a collection (with its own volumes) per bucket, so tests share
one bucket and keep apart by prefix; nothing is cleaned up between tests (the
server's directory goes at the end of the session).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from documee_remote.stores import Store
from documee_remote.stores._fsspec import FsspecStore
from documee_remote.stores._obstore import ObstoreStore
from documee_remote.stores.s3 import S3Store
from documee_remote.testing.fixtures import S3Backdoor
from documee_remote.testing.seaweed import SeaweedServer

#: Each S3 backend's opener, by the name ``backend=`` takes.
OPENERS: dict[str, Callable[..., Store]] = {
    "s3": S3Store.from_url,
    "fsspec": FsspecStore.from_url,
    "obstore": ObstoreStore.from_url,
}


@dataclass
class SeaweedPrefix:
    """``s3://<bucket>/<prefix>`` on the session's server, the prefix unique to a test."""

    server: SeaweedServer
    prefix: str

    @property
    def endpoint_url(self) -> str:
        """The server's S3 endpoint."""
        return self.server.endpoint_url

    def url(self, sub: str = "") -> str:
        """``s3://<bucket>/<prefix><sub>``."""
        return self.server.url(self.prefix + sub)

    def factory(self, backend: str = "s3", sub: str = "") -> Callable[..., Store]:
        """A picklable opener of ``backend``'s store on :meth:`url` (spawned workers use it)."""
        return functools.partial(
            OPENERS[backend],
            self.url(sub),
            endpoint_url=self.endpoint_url,
            region=self.server.region,
        )

    def backdoor(self, sub: str = "") -> S3Backdoor:
        """Raw access under :meth:`url`, with a plain boto3 client."""
        return S3Backdoor(self.server.client(), self.server.bucket, self.prefix + sub)


@pytest.fixture
def seaweed_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Only the server's keys and endpoint in the environment (workers inherit it)."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "DOCUMEE_")):
            monkeypatch.delenv(name)
    env = {
        **seaweed.env(),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def sw(seaweed: SeaweedServer, seaweed_env: dict[str, str]) -> SeaweedPrefix:
    """A prefix of the SeaweedFS bucket no other test uses."""
    if not seaweed.running:
        pytest.fail(f"the SeaweedFS server died; see {seaweed!r}")
    return SeaweedPrefix(seaweed, f"t-{uuid.uuid4().hex[:12]}/")


def open_store(sw: SeaweedPrefix, backend: str = "s3", **options: Any) -> Store:
    """``backend``'s store on the test's prefix."""
    return sw.factory(backend)(**options)
