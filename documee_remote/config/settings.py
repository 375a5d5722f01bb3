"""The environment: :class:`Settings` reads the ``DOCUMEE_*`` variables, by hand.

:class:`Settings` reads the S3 options (:mod:`.options`), the store URL and the
common store options from ``DOCUMEE_*`` environment variables, and
:meth:`Settings.complete` is the one rule for combining them with a call's own
arguments (explicit arguments win, settings fill in where they apply), which
:func:`~documee_remote.open_store` applies on every path. Standard AWS
variables (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_MAX_ATTEMPTS``, ``AWS_ENDPOINT_URL_S3``, ...) are left to boto3, which
reads them itself; a ``DOCUMEE_S3_*`` variable that is set wins over its AWS
counterpart.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .options import _FIELDS, OptionField, S3Options, _fast_validate

if TYPE_CHECKING:
    from ..stores.base import Store

__all__ = [
    "BACKENDS",
    "COMMON_STORE_OPTIONS",
    "DEFAULT_STORE_URL",
    "SettingField",
    "Settings",
    "backend_opens",
    "url_scheme",
]


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
    "cache": SettingField(
        "DOCUMEE_CACHE",
        "DOCUMEE_CACHE: true to read remote stores through the read cache in its default "
        "directory (false keeps it off, even with DOCUMEE_CACHE_DIR).",
        _parse_bool,
    ),
    "cache_dir": SettingField(
        "DOCUMEE_CACHE_DIR",
        "DOCUMEE_CACHE_DIR: the read cache's directory; setting it turns the cache on.",
        _text_parser(),
    ),
    "cache_max_bytes": SettingField(
        "DOCUMEE_CACHE_MAX_BYTES",
        "DOCUMEE_CACHE_MAX_BYTES: the bound of the read cache's directory (default 1 GiB).",
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
    ``DOCUMEE_CACHE``               ``true``: the read cache, in its default directory
    ``DOCUMEE_CACHE_DIR``           the read cache's directory (turns it on)
    ``DOCUMEE_CACHE_MAX_BYTES``     the bound of that directory
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
    cache: bool | None
    cache_dir: str | None
    cache_max_bytes: int | None
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
        # The one call from config up to the stores, which stand above it and read
        # Settings: a convenience kept for its callers, resolved when called.
        from ..stores import open_store

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
