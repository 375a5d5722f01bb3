"""Typed configuration: the S3 options both S3 backends share, and the environment.

:class:`S3Options` is the one model of the S3 options; ``S3Store`` (boto3) and
``FsspecStore`` (s3fs) both take its fields as keyword arguments. The helpers
at the bottom turn it into a boto3 session and client:
:func:`build_session`, :func:`build_client_config`, :func:`build_s3_client`
and :func:`assume_role_credentials`.

:class:`Settings` reads the same options, plus the store URL and the common
store options, from ``DOCUMEE_*`` environment variables, and
:meth:`Settings.complete` is the one rule for combining them with a call's own
arguments (explicit arguments win, settings fill in where they apply), which
:func:`~documee_remote.open_store` applies on every path. Standard AWS
variables (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_MAX_ATTEMPTS``, ``AWS_ENDPOINT_URL_S3``, ...) are left to boto3, which
reads them itself; a ``DOCUMEE_S3_*`` variable that is set wins over its AWS
counterpart.

This module imports neither boto3 nor botocore nor pydantic at import time, so
``import documee_remote`` and opening an ``s3://`` store (a Lambda cold start)
do not pay for them. :class:`S3Options` and :class:`Settings` validate by hand;
:class:`S3Options` falls back on the equivalent pydantic model,
:class:`S3OptionsModel` (built from the same field table, imported on first
use, PEP 562), for anything the hand-written check does not accept as it is:
the model then coerces the value as pydantic always did (``"3"`` for an int,
say) or raises pydantic's own ``ValidationError``, so invalid options fail
exactly as before.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, TypedDict, Unpack
from urllib.parse import urlsplit

from .errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from botocore.credentials import DeferredRefreshableCredentials
    from mypy_boto3_s3 import S3Client
    from pydantic import BaseModel, ValidationError

    from ._s3options_model import S3OptionsModel
    from .stores.base import Store

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
    "connection_refused",
    "describe_validation_error",
    "url_scheme",
]

#: What to run when boto3 is missing.
S3_INSTALL_HINT = "pip install 'documee-remote[s3]'"

_USER_AGENT = "documee-remote"


# -- the option rules, shared by S3Options and S3OptionsModel ---------------------------------


def _check_endpoint_url(value: str) -> str:
    """Refuse an endpoint URL that is not ``http(s)://host...``; raises ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("endpoint_url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        # Userinfo would be a credential in every repr and error message; boto3
        # ignores it anyway. Keep the value itself out of the message.
        raise ValueError("endpoint_url must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ValueError("endpoint_url must not have a query or fragment")
    return value


def _check_role_session_name(value: str) -> str:
    """Refuse a role session name STS would refuse; raises ValueError."""
    # STS's own rule; checked here so a typo fails at startup, not at the first refresh.
    if not 2 <= len(value) <= 64 or not all(c.isalnum() or c in "+=,.@-_" for c in value):
        raise ValueError("role_session_name must be 2 to 64 letters, digits or any of +=,.@-_")
    return value


def _check_combinations(values: Mapping[str, Any]) -> None:
    """Refuse options that are valid one by one but not together; raises ValueError."""
    if values["sse_kms_key_id"] is not None and values["sse"] != "aws:kms":
        raise ValueError('sse_kms_key_id needs sse="aws:kms"')
    if values["external_id"] is not None and values["role_arn"] is None:
        raise ValueError("external_id needs role_arn")


_REJECT: Any = object()  # "not valid as it is": let the pydantic model decide


@dataclass(frozen=True, slots=True)
class OptionField:
    """One field of :class:`S3Options`: its type, default and description.

    The items of ``S3Options.model_fields``; they answer the parts of
    pydantic's ``FieldInfo`` that callers use (``description``, ``default``,
    ``annotation``, ``is_required()``), and :class:`S3OptionsModel` is built
    from them, so both validators share one table.
    """

    kind: type[str] | type[int] | type[float]
    default: Any
    description: str
    optional: bool = True
    choices: tuple[str, ...] = ()
    ge: int | None = None
    gt: float | None = None
    repr: bool = True
    check: Callable[[Any], Any] | None = None

    @property
    def annotation(self) -> Any:
        """The field's type as pydantic sees it, e.g. ``Literal["AES256", "aws:kms"] | None``."""
        literal: Any = Literal
        base: Any = literal[self.choices] if self.choices else self.kind
        return base | None if self.optional else base

    def is_required(self) -> bool:
        """Always False: every S3 option has a default."""
        return False

    def accept(self, value: Any) -> Any:
        """``value`` as pydantic would store it if it is valid as it is, else ``_REJECT``.

        Deliberately narrower than pydantic's lax mode (exact ``str``, ``int`` and
        ``float`` only, no ``"3"`` for 3): whatever this refuses goes to the
        pydantic model, which coerces or raises, so the two can never disagree.
        """
        if value is None:
            return None if self.optional else _REJECT
        cls = type(value)
        if self.kind is str:
            if cls is not str or (self.choices and value not in self.choices):
                return _REJECT
        elif self.kind is int:
            if cls is not int:  # bool is an int subclass; pydantic's lax rules handle it
                return _REJECT
        elif cls is int and abs(value) < 2**53:  # float field: pydantic gives float(int)
            value = float(value)
        elif cls is not float:
            return _REJECT
        if self.ge is not None and not value >= self.ge:
            return _REJECT
        if self.gt is not None and not value > self.gt:  # also refuses NaN, as pydantic does
            return _REJECT
        return value


_FIELDS: dict[str, OptionField] = {
    "endpoint_url": OptionField(
        str,
        None,
        "An S3-compatible endpoint URL (MinIO, R2, LocalStack, moto server).",
        check=_check_endpoint_url,
    ),
    "region": OptionField(str, None, "The bucket's region; boto3's resolution when unset."),
    "profile": OptionField(str, None, "A profile of the AWS config files."),
    "role_arn": OptionField(
        str, None, "An IAM role to assume, with automatically refreshed credentials."
    ),
    "external_id": OptionField(
        str, None, "The ExternalId of the role's trust policy (secret: never shown).", repr=False
    ),
    "role_session_name": OptionField(
        str,
        "documee-remote",
        "The session name of the assumed role.",
        optional=False,
        check=_check_role_session_name,
    ),
    "sse": OptionField(
        str,
        None,
        "Server-side encryption for writes: AES256 or aws:kms.",
        choices=("AES256", "aws:kms"),
    ),
    "sse_kms_key_id": OptionField(str, None, "The KMS key id or ARN for sse=aws:kms."),
    "expected_bucket_owner": OptionField(
        str, None, "The account id that must own the bucket (ExpectedBucketOwner)."
    ),
    "max_pool_connections": OptionField(
        int, None, "Connection pool size; the store's concurrency when unset.", ge=1
    ),
    "connect_timeout": OptionField(
        float, 5.0, "Seconds to wait for a connection.", optional=False, gt=0
    ),
    "read_timeout": OptionField(
        float, 60.0, "Seconds to wait for a response.", optional=False, gt=0
    ),
    "retry_mode": OptionField(
        str,
        "standard",
        "botocore's retry mode.",
        optional=False,
        choices=("standard", "adaptive", "legacy"),
    ),
    "max_attempts": OptionField(
        int, 5, "Attempts per request, including the first.", optional=False, ge=1
    ),
    "addressing_style": OptionField(
        str,
        None,
        "S3 addressing style: path, virtual or auto.",
        choices=("auto", "path", "virtual"),
    ),
}
_DEFAULTS = {name: field.default for name, field in _FIELDS.items()}


def _fast_validate(data: object) -> dict[str, Any] | None:
    """Every field's value if ``data`` is a dict of valid options as they are, else None."""
    if type(data) is not dict:
        return None
    values = dict(_DEFAULTS)
    for name, given in data.items():
        field = _FIELDS.get(name)
        if field is None:  # unknown option: pydantic names it (extra="forbid")
            return None
        value = field.accept(given)
        if value is _REJECT:
            return None
        if field.check is not None and value is not None:
            try:
                value = field.check(value)
            except ValueError:
                return None
        values[name] = value
    try:
        _check_combinations(values)
    except ValueError:
        return None
    return values


class S3Options:
    """The options of an S3 connection, shared by the boto3 and fsspec backends.

    Every field is optional; unset fields fall back to boto3's own resolution
    (environment variables, ``~/.aws/config``, instance roles).

    Instances are immutable, hashable and compare by value. Invalid options
    raise pydantic's ``ValidationError`` (:meth:`from_options` turns it into
    :class:`~documee_remote.errors.ConfigurationError`). The class answers the
    parts of pydantic's model API its callers use (``model_validate``,
    ``model_dump``, ``model_fields``, ``model_fields_set``,
    ``model_json_schema``) without importing pydantic for valid options: see
    the module docstring, and :class:`S3OptionsModel` for the pydantic model.

    Attributes
    ----------
    endpoint_url:
        An S3-compatible endpoint (MinIO, Cloudflare R2, LocalStack, a moto
        server), e.g. ``http://127.0.0.1:9000``. Default: AWS, or boto3's
        ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
    region:
        The bucket's region. Default: boto3's resolution (``AWS_REGION``,
        ``AWS_DEFAULT_REGION``, the profile's ``region``).
    profile:
        A profile of ``~/.aws/config`` (boto3's ``profile_name``).
    role_arn:
        Assume this IAM role. Its temporary credentials are refreshed
        automatically before they expire, so long batch jobs keep working.
    external_id:
        The ``ExternalId`` the role's trust policy asks for. Treated as a
        secret: never shown in reprs, logs or errors.
    role_session_name:
        The session name of the assumed role (appears in CloudTrail).
    sse:
        Server-side encryption for every write: ``"AES256"`` (SSE-S3) or
        ``"aws:kms"`` (SSE-KMS).
    sse_kms_key_id:
        The KMS key for ``sse="aws:kms"``; the bucket's default key when unset.
    expected_bucket_owner:
        The 12-digit account id that must own the bucket; sent as
        ``ExpectedBucketOwner`` on every request, so a bucket name taken over
        by another account is refused with 403 instead of read or written.
    max_pool_connections:
        Size of the client's connection pool. Default: the store's
        ``concurrency``, so bulk operations never wait for a connection.
    connect_timeout:
        Seconds to wait for a TCP/TLS connection.
    read_timeout:
        Seconds to wait for a response or the next chunk of a body.
    retry_mode:
        botocore's retry mode: ``"standard"`` (exponential backoff with
        jitter and a retry quota), ``"adaptive"`` (also rate-limits the client
        on throttling) or ``"legacy"``.
    max_attempts:
        Attempts per request *including the first one* (the meaning of
        ``AWS_MAX_ATTEMPTS``); 1 disables retries.
    addressing_style:
        ``"path"`` (``endpoint/bucket/key``, what most S3-compatible services
        want), ``"virtual"`` (``bucket.endpoint/key``) or ``"auto"``.
    """

    __slots__ = (*_FIELDS, "_fields_set")

    endpoint_url: str | None
    region: str | None
    profile: str | None
    role_arn: str | None
    external_id: str | None
    role_session_name: str
    sse: Literal["AES256", "aws:kms"] | None
    sse_kms_key_id: str | None
    expected_bucket_owner: str | None
    max_pool_connections: int | None
    connect_timeout: float
    read_timeout: float
    retry_mode: Literal["standard", "adaptive", "legacy"]
    max_attempts: int
    addressing_style: Literal["auto", "path", "virtual"] | None
    _fields_set: frozenset[str]

    #: name -> :class:`OptionField`, in order (pydantic's ``model_fields``).
    model_fields: ClassVar[Mapping[str, OptionField]] = MappingProxyType(_FIELDS)

    def __init__(self, **data: Unpack[S3OptionsDict]) -> None:
        _assign(self, *_validate(data))

    @classmethod
    def _build(cls, values: Mapping[str, Any], fields_set: frozenset[str]) -> S3Options:
        options = cls.__new__(cls)
        _assign(options, values, fields_set)
        return options

    @classmethod
    def model_validate(cls, obj: object) -> S3Options:
        """``obj`` if it is an S3Options, else validate it (a dict) as the constructor does."""
        if isinstance(obj, cls):
            return obj
        return cls._build(*_validate(obj))

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> S3Options:
        """Validate a dict of options, raising ConfigurationError (never echoing values)."""
        values = _fast_validate(options)
        if values is not None:
            return cls._build(values, frozenset(options))
        # Invalid or in need of coercion: pydantic decides, so it is imported anyway.
        from pydantic import ValidationError

        try:
            return cls.model_validate(options)
        except ValidationError as exc:
            raise ConfigurationError(
                "invalid S3 options: " + describe_validation_error(exc)
            ) from None

    @classmethod
    def model_json_schema(cls, **kwargs: Any) -> dict[str, Any]:
        """The JSON schema of the options (pydantic's, from :class:`S3OptionsModel`)."""
        return _pydantic_model().model_json_schema(**kwargs)

    @property
    def model_fields_set(self) -> frozenset[str]:
        """The fields given explicitly, even if given their default value."""
        return self._fields_set

    def model_dump(self, *, exclude_unset: bool = False) -> dict[str, Any]:
        """The options as a dict; only those given explicitly with ``exclude_unset``."""
        return {
            name: getattr(self, name)
            for name in _FIELDS
            if not exclude_unset or name in self._fields_set
        }

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, S3Options):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def _repr_items(self) -> Iterator[str]:
        # external_id is a secret: left out, as pydantic's Field(repr=False) did.
        return (f"{n}={getattr(self, n)!r}" for n, f in _FIELDS.items() if f.repr)

    def __repr__(self) -> str:
        return f"S3Options({', '.join(self._repr_items())})"

    def __str__(self) -> str:
        return " ".join(self._repr_items())

    def __setattr__(self, name: str, value: object) -> NoReturn:
        _raise_frozen(name, value)

    def __delattr__(self, name: str) -> NoReturn:
        _raise_frozen(name, None)

    def __reduce__(self) -> tuple[Any, ...]:
        # Slots and a frozen __setattr__ defeat pickle's default; rebuild from the values.
        return (_restore, (self.model_dump(), self._fields_set))


def _validate(data: object) -> tuple[dict[str, Any], frozenset[str]]:
    """Every field's value and the names given, or pydantic's ValidationError."""
    values = _fast_validate(data)
    if values is not None:
        return values, frozenset(data)  # type: ignore[call-overload]  # a dict, checked above
    # Not valid as it is: the pydantic model coerces it or raises ValidationError.
    model = _pydantic_model().model_validate(data)
    return {name: getattr(model, name) for name in _FIELDS}, frozenset(model.model_fields_set)


def _assign(options: S3Options, values: Mapping[str, Any], fields_set: frozenset[str]) -> None:
    # The one place that writes the slots, past the frozen __setattr__.
    for name in _FIELDS:
        object.__setattr__(options, name, values[name])
    object.__setattr__(options, "_fields_set", fields_set)


def _restore(values: dict[str, Any], fields_set: frozenset[str]) -> S3Options:
    return S3Options._build(values, fields_set)


def _raise_frozen(name: str, value: object) -> NoReturn:
    # The error a frozen pydantic model raises, for the callers that catch it.
    from pydantic_core import ValidationError

    raise ValidationError.from_exception_data(
        "S3Options", [{"type": "frozen_instance", "loc": (name,), "input": value}]
    )


def _pydantic_model() -> type[BaseModel]:
    from ._s3options_model import S3OptionsModel

    return S3OptionsModel


class S3OptionsDict(TypedDict, total=False):
    """:class:`S3Options` as keyword arguments (``S3Store(..., **options)`` is type-checked)."""

    endpoint_url: str | None
    region: str | None
    profile: str | None
    role_arn: str | None
    external_id: str | None
    role_session_name: str
    sse: Literal["AES256", "aws:kms"] | None
    sse_kms_key_id: str | None
    expected_bucket_owner: str | None
    max_pool_connections: int | None
    connect_timeout: float
    read_timeout: float
    retry_mode: Literal["standard", "adaptive", "legacy"]
    max_attempts: int
    addressing_style: Literal["auto", "path", "virtual"] | None


def describe_validation_error(exc: ValidationError, *, env_prefix: str = "") -> str:
    """Summarise a pydantic error without the offending input values.

    Pydantic's own message repeats the input, which may be a secret
    (``external_id``) or a URL with credentials; this names fields only.
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(p) for p in error["loc"]) or "options"
        if env_prefix and error["loc"]:
            field = env_prefix + field.upper()
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)


def __getattr__(name: str) -> Any:
    # S3OptionsModel needs pydantic (~30 ms), which opening a store does not: it is
    # imported on first use (PEP 562).
    if name == "S3OptionsModel":
        from ._s3options_model import S3OptionsModel

        return S3OptionsModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- the environment ------------------------------------------------------------------------

#: Where analyses live when neither an argument nor ``DOCUMEE_STORE_URL`` names a
#: store: upstream Documee's own directory, relative to the working directory.
DEFAULT_STORE_URL = ".documee/analysis"

#: The store options every backend takes.
COMMON_STORE_OPTIONS = ("read_only", "concurrency", "max_object_size")

#: The backends ``open_store`` knows, by name.
BACKENDS = ("s3", "obstore", "fsspec", "local", "memory")

_S3_SCHEMES = ("s3", "s3a")

# pydantic's words for booleans, so values that worked before still work.
_BOOLEANS = {
    **dict.fromkeys(("1", "true", "t", "yes", "y", "on"), True),
    **dict.fromkeys(("0", "false", "f", "no", "n", "off"), False),
}


def url_scheme(url: str) -> str:
    """The lower-case scheme of a store URL; ``""`` for a plain path."""
    return urlsplit(url).scheme.lower() if "://" in url else ""


def backend_opens(backend: str, scheme: str) -> bool:
    """Whether ``backend`` can open URLs of ``scheme`` at all."""
    if backend == "local":
        return scheme in ("", "file")
    if backend == "memory":
        return scheme == "memory"
    if backend in ("s3", "obstore"):
        return scheme in _S3_SCHEMES
    return scheme != ""  # fsspec: any URL with a scheme


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        found = _BOOLEANS.get(value.strip().lower())
        if found is not None:
            return found
    raise ValueError("must be true or false (also 1/0, yes/no, on/off)")


def _int_parser(minimum: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError("must be a whole number") from None
        if type(value) is not int:
            raise ValueError("must be a whole number")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _float_parser(above: float) -> Callable[[object], float]:
    def parse(value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError("must be a number") from None
        if type(value) is int:
            value = float(value)
        if type(value) is not float or not math.isfinite(value):
            raise ValueError("must be a finite number")
        if not value > above:
            raise ValueError(f"must be more than {above:g}")
        return value

    return parse


def _text_parser(
    choices: tuple[str, ...] = (), check: Callable[[Any], Any] | None = None
) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be text")
        value = value.strip()
        if choices and value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        if check is not None:
            check(value)
        return value

    return parse


def _option_parser(field: OptionField) -> Callable[[object], Any]:
    """The parser of one S3 option's variable: the option's own rules, from text."""
    if field.kind is int:
        return _int_parser(field.ge if field.ge is not None else -(2**63))
    if field.kind is float:
        return _float_parser(field.gt if field.gt is not None else -math.inf)
    return _text_parser(field.choices, field.check)


@dataclass(frozen=True, slots=True)
class SettingField:
    """One ``DOCUMEE_*`` variable of :class:`Settings`: its name, meaning and parser."""

    variable: str
    description: str
    parse: Callable[[object], Any]
    repr: bool = True
    default: Any = None


_SETTINGS: dict[str, SettingField] = {
    "store_url": SettingField(
        "DOCUMEE_STORE_URL",
        "DOCUMEE_STORE_URL: the store URL (s3://bucket/prefix, file:///path, memory://).",
        _text_parser(),
    ),
    "backend": SettingField(
        "DOCUMEE_BACKEND",
        "DOCUMEE_BACKEND: force a backend (s3 = boto3, the default for s3:// URLs; "
        "obstore; fsspec; local; memory); ignored for URLs it cannot open.",
        _text_parser(BACKENDS),
    ),
    "concurrency": SettingField(
        "DOCUMEE_CONCURRENCY",
        "DOCUMEE_CONCURRENCY: requests kept in flight by bulk operations (default 16).",
        _int_parser(1),
    ),
    "read_only": SettingField(
        "DOCUMEE_READ_ONLY",
        "DOCUMEE_READ_ONLY: true to open the store read-only.",
        _parse_bool,
    ),
    "max_object_size": SettingField(
        "DOCUMEE_MAX_OBJECT_SIZE",
        "DOCUMEE_MAX_OBJECT_SIZE: refuse to read objects larger than this many bytes "
        "(default 1 GiB).",
        _int_parser(0),
    ),
    **{
        "s3_" + name: SettingField(
            f"DOCUMEE_S3_{name.upper()}",
            f"DOCUMEE_S3_{name.upper()}: {field.description}",
            _option_parser(field),
            repr=field.repr,
        )
        for name, field in _FIELDS.items()
    },
}


def _read_settings(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting's value (None when unset), or ConfigurationError naming each bad one.

    Values come from ``overrides`` (not None), else from ``environ``; an empty
    variable counts as unset. Messages name the variable, never its value
    (``DOCUMEE_S3_EXTERNAL_ID`` is a secret, a URL may carry one).
    """
    unknown = sorted(set(overrides) - set(_SETTINGS))
    if unknown:
        raise ConfigurationError("unknown setting(s): " + ", ".join(unknown))
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, field in _SETTINGS.items():
        raw: object = overrides.get(name)
        source = name
        if raw is None:
            raw = environ.get(field.variable) or None
            source = field.variable
        if raw is None:
            values[name] = None
            continue
        try:
            values[name] = field.parse(raw)
        except ValueError as exc:
            problems.append(f"{source}: {exc}")
    if problems:
        raise ConfigurationError("invalid environment: " + "; ".join(problems))
    return values


class Settings:
    """documee-remote's configuration from the environment: one ``DOCUMEE_*`` variable each.

    Every field is read from ``DOCUMEE_<FIELD NAME IN UPPER CASE>``; unset (or
    empty) variables leave the option to the call or the backend's default
    (and, for the S3 options, to boto3's own resolution of the ``AWS_*``
    variables).

    ==============================  ============================================
    variable                        meaning
    ==============================  ============================================
    ``DOCUMEE_STORE_URL``           where analyses live (``s3://bucket/prefix``,
                                    ``file:///path``, ``memory://``)
    ``DOCUMEE_BACKEND``             ``s3`` (boto3), ``obstore``, ``fsspec``,
                                    ``local``, ``memory``
    ``DOCUMEE_CONCURRENCY``         parallel requests of bulk operations
    ``DOCUMEE_READ_ONLY``           ``true`` to refuse every write
    ``DOCUMEE_MAX_OBJECT_SIZE``     refuse to read objects larger than this (bytes)
    ``DOCUMEE_S3_<OPTION>``         each field of :class:`S3Options`, e.g.
                                    ``DOCUMEE_S3_ENDPOINT_URL``, ``DOCUMEE_S3_REGION``,
                                    ``DOCUMEE_S3_ROLE_ARN``, ``DOCUMEE_S3_SSE``
    ==============================  ============================================

    :func:`~documee_remote.open_store` (and so ``PersistenceManager``, the CLI
    and the Lambda handler) reads them on every call: each fills in an option
    the call does not pass, where it applies to the store's backend (the
    ``DOCUMEE_S3_*`` ones to ``s3://`` URLs only); explicit arguments win.
    Validated by hand, without pydantic, so reading them costs a Lambda cold
    start nothing. The constructor and :meth:`load` read ``os.environ``;
    keyword arguments override single fields. An invalid value raises
    :class:`~documee_remote.errors.ConfigurationError` naming the variable,
    never its value. Instances are immutable, hashable and compare by value.
    """

    __slots__ = tuple(_SETTINGS)

    store_url: str | None
    backend: Literal["s3", "obstore", "fsspec", "local", "memory"] | None
    concurrency: int | None
    read_only: bool | None
    max_object_size: int | None
    s3_endpoint_url: str | None
    s3_region: str | None
    s3_profile: str | None
    s3_role_arn: str | None
    s3_external_id: str | None
    s3_role_session_name: str | None
    s3_sse: Literal["AES256", "aws:kms"] | None
    s3_sse_kms_key_id: str | None
    s3_expected_bucket_owner: str | None
    s3_max_pool_connections: int | None
    s3_connect_timeout: float | None
    s3_read_timeout: float | None
    s3_retry_mode: Literal["standard", "adaptive", "legacy"] | None
    s3_max_attempts: int | None
    s3_addressing_style: Literal["auto", "path", "virtual"] | None

    #: name -> :class:`SettingField`, in order (as pydantic's ``model_fields``).
    model_fields: ClassVar[Mapping[str, SettingField]] = MappingProxyType(_SETTINGS)

    def __init__(self, **overrides: Any) -> None:
        values = _read_settings(os.environ, overrides)
        for name in _SETTINGS:
            object.__setattr__(self, name, values[name])

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read ``os.environ``; invalid values raise ConfigurationError naming the variable."""
        return cls(**overrides)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Read ``environ`` instead of ``os.environ`` (tests, subprocess environments)."""
        settings = cls.__new__(cls)
        values = _read_settings(environ, overrides)
        for name in _SETTINGS:
            object.__setattr__(settings, name, values[name])
        return settings

    def s3_options(self) -> dict[str, Any]:
        """The ``DOCUMEE_S3_*`` values that are set, keyed by :class:`S3Options` field."""
        values = {name: getattr(self, "s3_" + name) for name in _FIELDS}
        return {name: value for name, value in values.items() if value is not None}

    def complete(self, url: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` (a call's explicit keyword arguments, ``backend`` included)
        completed with these settings: the rule every way of opening a store follows.

        An explicit option always wins. A setting fills in an option the call
        does not give, if it applies to ``url``'s backend: ``DOCUMEE_BACKEND``
        only if that backend opens the URL's scheme, ``DOCUMEE_S3_*`` only for
        ``s3://`` URLs (or when ``url`` is None), so ``DOCUMEE_S3_REGION`` in a
        shell profile does not break a local store. The S3 options given as
        ``options=S3Options(...)`` count as explicit, and a ``session`` as an
        explicit profile.

        Raises
        ------
        ConfigurationError
            The S3 options, completed, do not go together; the message names
            the variables that filled them in.
        """
        merged = dict(options)
        scheme = None if url is None else url_scheme(url)
        backend = merged.get("backend")
        if (
            backend is None
            and self.backend is not None
            and (scheme is None or backend_opens(self.backend, scheme))
        ):
            merged["backend"] = backend = self.backend
        for name in COMMON_STORE_OPTIONS:
            value = getattr(self, name)
            if value is not None and name not in merged:
                merged[name] = value
        if scheme is None or (
            scheme in _S3_SCHEMES and backend in (None, "s3", "obstore", "fsspec")
        ):
            merged.update(self._s3_fill(merged))
        return merged

    def _s3_fill(self, merged: Mapping[str, Any]) -> dict[str, Any]:
        """The ``DOCUMEE_S3_*`` options the explicit ones in ``merged`` leave to fill."""
        given = {name for name in merged if name in _FIELDS}
        explicit = merged.get("options")
        base = {}
        if isinstance(explicit, S3Options):
            given |= explicit.model_fields_set
            base = explicit.model_dump(exclude_unset=True)
        if merged.get("session") is not None:
            given.add("profile")  # boto3 takes a session or a profile, not both
        filled = {name: v for name, v in self.s3_options().items() if name not in given}
        if not filled:
            return filled
        own = {**base, **{name: merged[name] for name in merged if name in _FIELDS}}
        if _fast_validate({**own, **filled}) is None and _fast_validate(own) is not None:
            # Fine without the environment, wrong with it: say which variables.
            try:
                S3Options.from_options({**own, **filled})
            except ConfigurationError as exc:
                names = ", ".join(_SETTINGS["s3_" + name].variable for name in filled)
                raise ConfigurationError(f"{exc} (set in the environment: {names})") from None
        return filled

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments for ``open_store(self.store_url, **options)``: the
        settings that are set and apply (see :meth:`complete`)."""
        return self.complete(self.store_url, {})

    def open_store(self) -> Store:
        """Open the store named by ``DOCUMEE_STORE_URL`` with these settings."""
        if not self.store_url:
            raise ConfigurationError("DOCUMEE_STORE_URL is not set")
        from .stores import open_store

        return open_store(self.store_url, settings=self)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _SETTINGS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        # DOCUMEE_S3_EXTERNAL_ID is a secret: left out.
        shown = (f"{n}={getattr(self, n)!r}" for n, f in _SETTINGS.items() if f.repr)
        return f"Settings({', '.join(shown)})"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Settings are immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Settings are immutable: cannot delete {name!r}")


# -- boto3 --------------------------------------------------------------------------------


def _require_boto3() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"the S3 backend needs boto3: {S3_INSTALL_HINT}") from exc


def build_client_config(options: S3Options, *, max_pool_connections: int) -> Config:
    """botocore's ``Config`` for ``options``.

    ``max_pool_connections`` is used unless ``options.max_pool_connections``
    is set; stores pass their ``concurrency``.
    """
    _require_boto3()
    from botocore.config import Config

    s3: Any = {"addressing_style": options.addressing_style} if options.addressing_style else None
    return Config(
        max_pool_connections=options.max_pool_connections or max_pool_connections,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        # total_max_attempts counts the first attempt, like AWS_MAX_ATTEMPTS; botocore's
        # "max_attempts" key would count retries only.
        retries={"mode": options.retry_mode, "total_max_attempts": options.max_attempts},
        s3=s3,
        user_agent_extra=_USER_AGENT,
    )


def assume_role_credentials(
    source: boto3.Session,
    role_arn: str,
    *,
    role_session_name: str = "documee-remote",
    external_id: str | None = None,
    region: str | None = None,
    sts_endpoint_url: str | None = None,
    duration_seconds: int | None = None,
) -> DeferredRefreshableCredentials:
    """Credentials of ``role_arn`` that refresh themselves before they expire.

    Nothing is requested until the first use. botocore then calls
    ``sts:AssumeRole`` with ``source``'s credentials, and again whenever the
    credentials come within 15 minutes of expiring (10 minutes: mandatory),
    from whichever thread notices first, under botocore's lock.

    Parameters
    ----------
    source:
        The session whose credentials assume the role.
    sts_endpoint_url:
        STS endpoint; by default boto3's resolution (``AWS_ENDPOINT_URL_STS``,
        regional endpoints), never the S3 ``endpoint_url``.
    duration_seconds:
        Lifetime of each set of credentials; STS's default (1 hour) when None.
    """
    _require_boto3()
    from botocore.credentials import DeferredRefreshableCredentials

    params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": role_session_name}
    if external_id is not None:
        params["ExternalId"] = external_id
    if duration_seconds is not None:
        params["DurationSeconds"] = duration_seconds
    lock = threading.Lock()
    sts_client: list[Any] = []  # created on first refresh, once

    def refresh() -> dict[str, str]:
        # botocore calls this under its own refresh lock; ours covers the one-time
        # client creation, because boto3 sessions are not thread-safe.
        with lock:
            if not sts_client:
                sts_client.append(
                    source.client(
                        "sts",
                        region_name=region or source.region_name,
                        endpoint_url=sts_endpoint_url,
                    )
                )
            client = sts_client[0]
        response = client.assume_role(**params)
        creds = response["Credentials"]
        expiration: datetime = creds["Expiration"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": expiration.isoformat(),
        }

    return DeferredRefreshableCredentials(refresh_using=refresh, method="assume-role")


# One botocore data loader for every session this module creates. A new session
# otherwise re-reads and re-parses S3's 2 MB service model (~150 ms per store); the
# loader only caches those read-only models, so sharing it leaks nothing between
# stores. boto3.Session appends its own data directory to the loader's search path
# on every construction, hence the de-duplication under the lock.
_LOADER_LOCK = threading.Lock()
_shared_loader: Any = None


def _new_session(profile: str | None, region: str | None) -> boto3.Session:
    import boto3
    import botocore.session

    global _shared_loader  # noqa: PLW0603 - the cache described above
    with _LOADER_LOCK:
        core = botocore.session.Session(profile=profile)
        if _shared_loader is None:
            _shared_loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _shared_loader)
        session = boto3.Session(botocore_session=core, region_name=region)
        paths = _shared_loader.search_paths
        paths[:] = list(dict.fromkeys(paths))
    return session


def _config_error(what: str, exc: Exception) -> ConfigurationError:
    from botocore.exceptions import ConfigNotFound, ConfigParseError, ProfileNotFound

    # These name a profile or a file, never a secret; other messages are left out.
    safe = isinstance(exc, ProfileNotFound | ConfigNotFound | ConfigParseError)
    return ConfigurationError(f"{what}: {exc if safe else type(exc).__name__}")


def build_session(
    options: S3Options,
    *,
    session: boto3.Session | None = None,
    sts_endpoint_url: str | None = None,
) -> boto3.Session:
    """A boto3 session for ``options``: the given one, or a new one for ``profile``/``region``.

    With ``role_arn``, the result is a new session whose credentials are
    :func:`assume_role_credentials` of the base session's (``session``, or
    the profile's, or boto3's default chain).
    """
    _require_boto3()
    from botocore.exceptions import BotoCoreError

    if session is not None and options.profile is not None:
        raise ConfigurationError("give either session or profile, not both")
    try:
        base = session or _new_session(options.profile, options.region)
    except BotoCoreError as exc:
        raise _config_error("cannot create an AWS session", exc) from exc
    if options.role_arn is None:
        return base

    from botocore.credentials import CredentialProvider, CredentialResolver

    credentials = assume_role_credentials(
        base,
        options.role_arn,
        role_session_name=options.role_session_name,
        external_id=options.external_id,
        region=options.region,
        sts_endpoint_url=sts_endpoint_url,
    )

    class _AssumedRole(CredentialProvider):
        METHOD = "assume-role"

        def load(self) -> DeferredRefreshableCredentials:
            return credentials

    assumed = _new_session(options.profile if session is None else None, options.region)
    # The resolver is the public way to replace where a session gets credentials.
    assumed._session.register_component("credential_provider", CredentialResolver([_AssumedRole()]))
    if options.region is None and base.region_name is not None:
        assumed._session.set_config_variable("region", base.region_name)
    return assumed


def build_s3_client(
    options: S3Options,
    *,
    session: boto3.Session | None = None,
    max_pool_connections: int = 16,
) -> S3Client:
    """An S3 client for ``options``; thread-safe, unlike the session it comes from.

    ``max_pool_connections`` applies unless ``options.max_pool_connections``
    is set (stores pass their ``concurrency``).

    Raises
    ------
    ConfigurationError
        The profile does not exist, or the client cannot be configured.
    """
    # botocore logs request headers (session tokens, credential scopes) at DEBUG:
    # scrub them before any handler sees them. Idempotent and free unless DEBUG is on.
    from .redact import install_redaction

    install_redaction(secrets=[options.external_id] if options.external_id else ())
    built = build_session(options, session=session)
    from botocore.exceptions import BotoCoreError

    try:
        client = built.client(
            "s3",
            region_name=options.region,
            endpoint_url=options.endpoint_url,
            config=build_client_config(options, max_pool_connections=max_pool_connections),
        )
    except BotoCoreError as exc:
        raise _config_error("cannot create an S3 client", exc) from exc
    _fail_fast_until_answered(client)
    return client


def connection_refused(exc: BaseException | None) -> bool:
    """Whether ``exc`` (a botocore connection error) is a refused TCP connection."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        inner = getattr(current, "kwargs", {}).get("error")
        stack.extend((current.__cause__, current.__context__, inner))
    return False


def _fail_fast_until_answered(client: S3Client) -> None:
    """Do not retry a refused connection to an endpoint that has never answered this client.

    A closed port (a wrong ``endpoint_url``, a server not started) otherwise
    costs every request botocore's whole backoff, 7 s on average with the
    default 5 attempts, before the error. Once the endpoint has answered
    anything, a refusal is a server restarting or a balancer shuffling, a real
    transient failure, and is retried as configured; timeouts, resets and DNS
    failures always are. The vetoed error is marked, so the message can say
    it was not retried.
    """
    answered = False  # per client; a benign race: threads only ever set it to True

    def needs_retry(
        response: object = None, caught_exception: BaseException | None = None, **_: Any
    ) -> bool | None:
        nonlocal answered
        if response is not None:
            answered = True
        elif not answered and connection_refused(caught_exception):
            kwargs = getattr(caught_exception, "kwargs", None)
            if isinstance(kwargs, dict):
                kwargs["not_retried"] = True
            return False  # the first answer that is not None: botocore does not retry
        return None  # botocore's own retry handler decides

    handler: Any = needs_retry  # botocore's stubs type handlers as returning None
    client.meta.events.register_first("needs-retry.s3", handler)
