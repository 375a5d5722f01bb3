"""The S3 options both S3 backends share: :class:`S3Options`, validated by hand.

:class:`S3Options` is the one model of the S3 options; ``S3Store`` (boto3),
``FsspecStore`` (s3fs) and ``ObstoreStore`` take its fields as keyword
arguments. It validates by hand, without pydantic, so opening an ``s3://``
store (a Lambda cold start) does not pay for it; for anything the hand-written
check does not accept as it is, it falls back on the equivalent pydantic model,
:class:`~documee_remote.config.S3OptionsModel` (built from the same field table
in :mod:`._model`, imported on first use): the model then coerces the value as
pydantic always did (``"3"`` for an int, say) or raises pydantic's own
``ValidationError``, so invalid options fail exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, TypedDict, Unpack
from urllib.parse import urlsplit

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

__all__ = [
    "OptionField",
    "S3Options",
    "S3OptionsDict",
    "describe_validation_error",
]


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
    from ._model import S3OptionsModel

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
