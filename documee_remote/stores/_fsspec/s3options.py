"""The S3 backend's options mapped onto s3fs's ``storage_options``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import S3Options, client_config_kwargs

#: The S3 option names shared with the native S3 backend (fields of ``S3Options``).
S3_OPTION_NAMES = tuple(S3Options.model_fields)


# -- S3 options -----------------------------------------------------------------------------


def s3fs_storage_options(options: S3Options, *, concurrency: int) -> dict[str, Any]:
    """Map the native S3 backend's options onto s3fs's ``storage_options``.

    ``role_arn`` becomes an aiobotocore session whose credentials come from
    STS AssumeRole and refresh themselves before they expire.
    ``max_pool_connections`` defaults to the store's ``concurrency`` so that
    bulk transfers do not queue for connections.
    """
    client_kwargs: dict[str, Any] = {}
    if options.endpoint_url:
        client_kwargs["endpoint_url"] = options.endpoint_url
    if options.region:
        client_kwargs["region_name"] = options.region
    # The same botocore Config as the native backend's, with a pool of at least 10.
    config_kwargs = client_config_kwargs(options, max_pool_connections=max(10, concurrency))
    additional: dict[str, Any] = {}
    if options.sse:
        additional["ServerSideEncryption"] = options.sse
    if options.sse_kms_key_id:
        additional["SSEKMSKeyId"] = options.sse_kms_key_id
    if options.expected_bucket_owner:
        additional["ExpectedBucketOwner"] = options.expected_bucket_owner
    storage: dict[str, Any] = {
        "client_kwargs": client_kwargs,
        "config_kwargs": config_kwargs,
        "s3_additional_kwargs": additional,
        # No process-wide sharing, no stale listings (see the module docstring).
        "skip_instance_cache": True,
        "use_listings_cache": False,
    }
    if options.role_arn:
        storage["session"] = _assume_role_session(options)
    elif options.profile:
        storage["profile"] = options.profile
    return storage


def _assume_role_session(options: S3Options) -> Any:
    """An aiobotocore session whose credentials come from AssumeRole and refresh themselves.

    The source credentials are the usual chain (or ``profile``). As in the
    native backend, STS is found by botocore's own resolution
    (``AWS_ENDPOINT_URL_STS``, regional endpoints), never at the S3
    ``endpoint_url``.
    """
    from aiobotocore.credentials import (
        AioAssumeRoleCredentialFetcher,
        AioCredentialResolver,
        AioDeferredRefreshableCredentials,
    )
    from aiobotocore.session import AioSession
    from botocore.credentials import CredentialProvider
    from botocore.exceptions import NoCredentialsError

    source = AioSession(profile=options.profile) if options.profile else AioSession()
    extra_args: dict[str, Any] = {"RoleSessionName": options.role_session_name}
    if options.external_id is not None:
        extra_args["ExternalId"] = options.external_id
    region = options.region

    def create_sts(service: str, **kwargs: Any) -> Any:
        return source.create_client(service, region_name=region, **kwargs)

    role_arn = options.role_arn

    class _AssumedRole(CredentialProvider):  # the async resolver awaits load()
        METHOD = "assume-role"
        CANONICAL_NAME = "documee-remote-assume-role"

        async def load(self) -> Any:
            source_credentials = await source.get_credentials()
            if source_credentials is None:
                raise NoCredentialsError()
            fetcher = AioAssumeRoleCredentialFetcher(
                client_creator=create_sts,
                source_credentials=source_credentials,
                role_arn=role_arn,
                extra_args=extra_args,
            )
            # Deferred: the first request fetches, and botocore refreshes shortly
            # before expiry, so a long-lived store never signs with stale keys.
            return AioDeferredRefreshableCredentials(
                refresh_using=fetcher.fetch_credentials, method=self.METHOD
            )

    session = AioSession()
    # The resolver is the public way to replace where a session gets credentials.
    session.register_component("credential_provider", AioCredentialResolver([_AssumedRole()]))
    return session


def _merge_storage_options(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if name in ("client_kwargs", "config_kwargs", "s3_additional_kwargs") and isinstance(
            value, Mapping
        ):
            merged[name] = {**merged.get(name, {}), **value}
        else:
            merged[name] = value
    return merged
