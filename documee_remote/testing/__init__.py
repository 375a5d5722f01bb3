"""Test tools for documee-remote and for its users' own tests.

- :mod:`documee_remote.testing.contract`: the store contract suite every backend subclasses.
- :mod:`documee_remote.testing.moto_server`: a moto S3 server with atomic conditional
  writes and a fault injector.

These modules import pytest and moto; the library itself never imports them.
"""
