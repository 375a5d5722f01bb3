"""Benchmarks of documee-remote against a sequential port of upstream and raw S3 clients.

Run everything with ``make bench`` (``python -m benchmarks.run``); see
``benchmarks/README.md``.
"""
