"""Typed configuration: the S3 options, the ``DOCUMEE_*`` environment, boto3 sessions.

One concern a module, each importing nothing from :mod:`documee_remote.stores`
(the stores stand above configuration and read it):

- :mod:`.options`: :class:`S3Options`, the one model of the S3 options both S3
  backends share, validated by hand (:class:`S3OptionsModel`, the equivalent
  pydantic model, is imported on first use only);
- :mod:`.settings`: :class:`Settings`, the ``DOCUMEE_*`` environment, and
  :meth:`Settings.complete`, the one rule for combining it with a call's own
  arguments, which :func:`~documee_remote.open_store` applies on every path;
- :mod:`.sessions`: boto3 sessions and S3 clients for the options
  (:func:`build_session`, :func:`build_client_config`, :func:`build_s3_client`,
  :func:`assume_role_credentials`).

Nothing here imports boto3, botocore or pydantic at import time, so
``import documee_remote`` and opening an ``s3://`` store (a Lambda cold start)
do not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import OptionField, S3Options, S3OptionsDict, describe_validation_error
from .sessions import (
    S3_INSTALL_HINT,
    assume_role_credentials,
    build_client_config,
    build_s3_client,
    build_session,
    client_config_kwargs,
    connection_refused,
)
from .settings import (
    BACKENDS,
    COMMON_STORE_OPTIONS,
    DEFAULT_STORE_URL,
    SettingField,
    Settings,
    backend_opens,
    url_scheme,
)

if TYPE_CHECKING:
    from ._model import S3OptionsModel

__all__ = [
    "BACKENDS",
    "COMMON_STORE_OPTIONS",
    "DEFAULT_STORE_URL",
    "S3_INSTALL_HINT",
    "OptionField",
    "S3Options",
    "S3OptionsDict",
    "S3OptionsModel",
    "SettingField",
    "Settings",
    "assume_role_credentials",
    "backend_opens",
    "build_client_config",
    "build_s3_client",
    "build_session",
    "client_config_kwargs",
    "connection_refused",
    "describe_validation_error",
    "url_scheme",
]


def __getattr__(name: str) -> Any:
    # S3OptionsModel needs pydantic (~30 ms), which opening a store does not: it is
    # imported on first use (PEP 562).
    if name == "S3OptionsModel":
        from ._model import S3OptionsModel

        return S3OptionsModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
