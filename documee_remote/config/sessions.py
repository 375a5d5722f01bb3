"""boto3 sessions and S3 clients for :class:`~documee_remote.config.S3Options`.

:func:`build_session`, :func:`build_client_config`, :func:`build_s3_client` and
:func:`assume_role_credentials`. boto3 and botocore are imported when one of
them is called, never at import time, so ``import documee_remote`` and the
other backends do not pay for them.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import redact
from ..errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from botocore.credentials import DeferredRefreshableCredentials
    from mypy_boto3_s3 import S3Client

    from .options import S3Options

__all__ = [
    "S3_INSTALL_HINT",
    "assume_role_credentials",
    "build_client_config",
    "build_s3_client",
    "build_session",
    "client_config_kwargs",
    "connection_refused",
]

#: What to run when boto3 is missing.
S3_INSTALL_HINT = "pip install 'documee-remote[s3]'"

_USER_AGENT = "documee-remote"


def _require_boto3() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(f"the S3 backend needs boto3: {S3_INSTALL_HINT}") from exc


def client_config_kwargs(options: S3Options, *, max_pool_connections: int) -> dict[str, Any]:
    """botocore ``Config`` keyword arguments for ``options``, for boto3 and for s3fs alike.

    ``max_pool_connections`` is used unless ``options.max_pool_connections``
    is set. Plain data: importing nothing, so the s3fs backend (which passes
    them as ``config_kwargs``) and :func:`build_client_config` share one table.
    """
    kwargs: dict[str, Any] = {
        "max_pool_connections": options.max_pool_connections or max_pool_connections,
        "connect_timeout": options.connect_timeout,
        "read_timeout": options.read_timeout,
        # total_max_attempts counts the first attempt, like AWS_MAX_ATTEMPTS; botocore's
        # "max_attempts" key would count retries only.
        "retries": {"mode": options.retry_mode, "total_max_attempts": options.max_attempts},
        "user_agent_extra": _USER_AGENT,
    }
    if options.addressing_style:
        kwargs["s3"] = {"addressing_style": options.addressing_style}
    return kwargs


def build_client_config(options: S3Options, *, max_pool_connections: int) -> Config:
    """botocore's ``Config`` for ``options``.

    ``max_pool_connections`` is used unless ``options.max_pool_connections``
    is set; stores pass their ``concurrency``.
    """
    _require_boto3()
    from botocore.config import Config

    return Config(**client_config_kwargs(options, max_pool_connections=max_pool_connections))


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
    redact.install_redaction(secrets=[options.external_id] if options.external_id else ())
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
