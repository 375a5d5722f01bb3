"""The store contract on a real SeaweedFS server, for each S3 backend.

The same suite as on moto (``tests/test_s3_store.py``, ``test_fsspec_store.py``,
``test_store_obstore.py``), the multi-process compare-and-swap race and the
probe included; it caught SeaweedFS answering keys before a ``StartAfter`` that
ends in ``/`` (issue 12, defect 9), which moto never does.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from documee_remote.stores import Store
from documee_remote.testing.contract import StoreContract
from documee_remote.testing.fixtures import S3Backdoor

from .conftest import SeaweedPrefix


class _OnSeaweed(StoreContract):
    backend = "s3"

    @pytest.fixture
    def store_factory(self, sw: SeaweedPrefix) -> Callable[..., Store]:
        return sw.factory(self.backend, "store/")

    @pytest.fixture
    def backdoor(self, sw: SeaweedPrefix) -> S3Backdoor:
        return sw.backdoor("store/")

    @pytest.fixture
    def process_store_factory(self, store_factory: Callable[..., Store]) -> Callable[[], Store]:
        return store_factory  # a partial of a classmethod: picklable for spawn workers


class TestSeaweedBoto3(_OnSeaweed):
    """``S3Store`` (boto3)."""

    backend = "s3"


class TestSeaweedFsspec(_OnSeaweed):
    """``FsspecStore`` over s3fs."""

    backend = "fsspec"


class TestSeaweedObstore(_OnSeaweed):
    """``ObstoreStore``."""

    backend = "obstore"
