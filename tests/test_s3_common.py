"""What both S3 backends share (``documee_remote.stores._s3common``), through both.

Every row of the shared tables and every request-dependent rule is checked
through S3Store's translation (botocore's ``ClientError`` as boto3 raises it)
and FsspecStore's (the same, and collapsed into an ``OSError`` the way s3fs
hands S3's answers on), so the two backends cannot drift apart. The live
parity tests at the end run the same requests through both stores.
"""

from __future__ import annotations

import errno
import inspect
import string
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import botocore.exceptions as bce
import pytest

from documee_remote.errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConfigurationError,
    ConflictError,
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    ObjectTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    ServiceUnavailableError,
    StorageTimeoutError,
    ThrottledError,
    TransientError,
    UnsupportedOperationError,
)
from documee_remote.stores import FsspecStore, Store, etag_of
from documee_remote.stores import _fsspec as fsspec_backend
from documee_remote.stores import _s3common as s3c
from documee_remote.stores import s3 as s3_backend
from documee_remote.stores._s3common import (
    ERROR_CODES,
    STATUS_FALLBACK,
    WRITE_TOKEN_METADATA,
    S3Answer,
    error_class,
)
from documee_remote.testing.fixtures import STORE_PREFIX, S3Endpoint

Translate = Callable[..., DocumeeRemoteError]


def _fsspec_collapsed(exc: BaseException, **kwargs: Any) -> DocumeeRemoteError:
    """FsspecStore's translation of ``exc`` as s3fs hands it on: an OSError caused by it."""
    collapsed = OSError(errno.EIO, "collapsed by s3fs")
    collapsed.__cause__ = exc
    return fsspec_backend.translate_error(collapsed, **kwargs)


TRANSLATORS: dict[str, Translate] = {
    "s3store": s3_backend.translate_error,
    "fsspec": fsspec_backend.translate_error,
    "fsspec-collapsed": _fsspec_collapsed,
}


@pytest.fixture(params=sorted(TRANSLATORS))
def translate(request: pytest.FixtureRequest) -> Translate:
    """Each backend's ``translate_error`` (and fsspec's on s3fs-collapsed errors)."""
    return TRANSLATORS[request.param]


@pytest.fixture(params=["s3store", "fsspec"])
def translate_raw(request: pytest.FixtureRequest) -> Translate:
    """Each backend's ``translate_error``, for exceptions the client raises as they are."""
    return TRANSLATORS[request.param]


def client_error(
    code: str, status: int | None, call: str = "GetObject", *, retries: int = 0
) -> bce.ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "server says"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status, "RetryAttempts": retries}
    return bce.ClientError(response, call)  # type: ignore[arg-type]


# -- the tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), sorted(ERROR_CODES.items()))
def test_every_error_code_in_the_table_translates_to_its_type(
    translate: Translate, code: str, expected: type[DocumeeRemoteError]
) -> None:
    status = int(code) if code.isdigit() else 400
    error = translate(
        client_error(code, status), store_url="s3://b/p/", operation="get", key="cb/k.json"
    )
    assert type(error) is expected
    assert "cb/k.json" in str(error) or expected is ConfigurationError
    assert "s3://b/p/" in str(error)
    assert error.key == "cb/k.json"


@pytest.mark.parametrize(("status", "expected"), sorted(STATUS_FALLBACK.items()))
def test_unknown_codes_fall_back_on_the_status(
    translate: Translate, status: int, expected: type[DocumeeRemoteError]
) -> None:
    assert error_class("SomethingNew", status) is expected
    error = translate(
        client_error("SomethingNew", status), store_url="s3://b/", operation="head", key="k"
    )
    assert type(error) is expected


def test_unlisted_5xx_and_unknown_errors_still_translate() -> None:
    assert error_class("Weird", 599) is ServiceUnavailableError
    assert error_class("Weird", 418) is DocumeeRemoteError
    assert error_class("", None) is DocumeeRemoteError
    assert error_class("", 0) is DocumeeRemoteError


def test_every_status_becomes_a_library_error(translate: Translate) -> None:
    for status in range(300, 600):
        error = translate(client_error("", status), store_url="s3://b/", operation="get", key="k")
        assert isinstance(error, DocumeeRemoteError), status
        if status >= 500 and status != 501:
            assert isinstance(error, ServiceUnavailableError | ThrottledError), status


def test_no_distinction_s3fs_makes_is_lost(translate: Translate) -> None:
    # Every error code s3fs knows becomes a library error, and its not-found,
    # permission and timeout classes map to ours.
    from s3fs.errors import ERROR_CODE_TO_EXCEPTION

    for code, theirs in ERROR_CODE_TO_EXCEPTION.items():
        ours = translate(client_error(code, 400), store_url="s3://b/", operation="get", key="k")
        assert isinstance(ours, DocumeeRemoteError), code
        if theirs is FileNotFoundError:
            # NoSuchBucket and friends are a wrong URL, not a missing object.
            assert isinstance(ours, NotFoundError | ConfigurationError), code
        elif theirs is PermissionError:
            # IllegalLocationConstraintException: a wrong region, i.e. configuration.
            assert isinstance(ours, PermissionDeniedError | ConfigurationError), code
        elif theirs is TimeoutError:
            assert isinstance(ours, StorageTimeoutError), code


# -- what depends on the request ------------------------------------------------------------------

# (code, status, operation, condition) -> the error it must become.
REQUEST_TABLE = [
    ("NoSuchKey", 404, "get", None, NotFoundError),
    ("404", 404, "head", None, NotFoundError),
    ("", 404, "head", None, NotFoundError),
    ("NoSuchKey", 404, "delete", None, NotFoundError),
    ("PreconditionFailed", 412, "put", "if_match", PreconditionFailedError),
    ("PreconditionFailed", 412, "put", "create_only", AlreadyExistsError),
    ("412", 412, "put", "create_only", AlreadyExistsError),
    ("PreconditionFailed", 412, "delete", "if_match", PreconditionFailedError),
    ("NoSuchKey", 404, "put", "if_match", PreconditionFailedError),  # If-Match, key missing
    ("404", 404, "put", "if_match", PreconditionFailedError),
    ("NoSuchKey", 404, "delete", "if_match", PreconditionFailedError),
    ("404", 404, "delete", "if_match", PreconditionFailedError),
    ("ConditionalRequestConflict", 409, "put", "if_match", ConditionalRequestConflictError),
    ("ConditionalRequestConflict", 409, "put", "create_only", ConditionalRequestConflictError),
    ("OperationAborted", 409, "put", None, ConditionalRequestConflictError),
    ("", 409, "put", None, ConflictError),
    ("AccessDenied", 403, "get", None, PermissionDeniedError),
    ("403", 403, "head", None, PermissionDeniedError),
    ("InvalidAccessKeyId", 403, "put", None, PermissionDeniedError),
    ("SlowDown", 503, "put", None, ThrottledError),
    ("Throttling", 400, "get", None, ThrottledError),
    ("", 429, "get", None, ThrottledError),
    ("InternalError", 500, "put", None, ServiceUnavailableError),
    ("ServiceUnavailable", 503, "get", None, ServiceUnavailableError),
    ("503", 503, "head", None, ServiceUnavailableError),
    ("BadGateway", 502, "get", None, ServiceUnavailableError),
    ("", 504, "list", None, ServiceUnavailableError),
    ("RequestTimeout", 400, "put", None, StorageTimeoutError),
    ("", 408, "get", None, StorageTimeoutError),
    ("NotImplemented", 501, "put", "if_match", UnsupportedOperationError),
    ("", 405, "delete", "if_match", UnsupportedOperationError),
    ("NoSuchBucket", 404, "get", None, ConfigurationError),
    ("PermanentRedirect", 301, "get", None, ConfigurationError),
    ("AuthorizationHeaderMalformed", 400, "get", None, ConfigurationError),
    ("EntityTooLarge", 400, "put", None, ObjectTooLargeError),
    ("KeyTooLongError", 400, "put", None, InvalidKeyError),
]


@pytest.mark.parametrize(("code", "status", "operation", "condition", "expected"), REQUEST_TABLE)
def test_request_table(
    translate: Translate,
    code: str,
    status: int,
    operation: str,
    condition: str | None,
    expected: type[DocumeeRemoteError],
) -> None:
    kwargs: dict[str, Any] = {}
    if condition == "if_match":
        kwargs["if_match"] = '"abc"'
    elif condition == "create_only":
        kwargs["create_only"] = True
    error = translate(
        client_error(code, status),
        store_url="s3://b/p/",
        operation=operation,
        key="cb/k.json",
        **kwargs,
    )
    assert type(error) is expected
    assert error.key == "cb/k.json"
    assert error.codebase_id == "cb"
    assert "cb/k.json" in str(error) or expected is ConfigurationError
    if expected is PreconditionFailedError and condition == "if_match":
        assert '"abc"' in str(error)


def test_a_missing_bucket_says_so(translate: Translate) -> None:
    error = translate(
        client_error("NoSuchBucket", 404), store_url="s3://b/p/", operation="get", key="cb/k"
    )
    assert type(error) is ConfigurationError
    assert "does not exist" in str(error)
    assert "NoSuchBucket" in str(error)


def test_conditional_request_conflict_is_retryable(translate: Translate) -> None:
    error = translate(
        client_error("ConditionalRequestConflict", 409, "PutObject"),
        store_url="s3://b/",
        operation="put",
    )
    assert isinstance(error, ConditionalRequestConflictError)
    assert isinstance(error, TransientError)


def test_errors_from_assuming_the_role_say_so(translate: Translate) -> None:
    error = translate(
        client_error("AccessDenied", 403, "AssumeRole"), store_url="s3://b/", operation="get"
    )
    assert isinstance(error, PermissionDeniedError)
    assert "assuming the role" in str(error)


def test_server_messages_are_cut_short(translate: Translate) -> None:
    exc = client_error("InternalError", 500)
    exc.response["Error"]["Message"] = "x" * 5000
    error = translate(exc, store_url="s3://b/", operation="get", key="k")
    assert len(str(error)) < 300


# -- botocore's own exceptions (aiobotocore raises the same classes) ------------------------------


def _botocore_error(cls: type[Exception]) -> Exception:
    fmt = getattr(cls, "fmt", "")
    fields = {name for _, name, _, _ in string.Formatter().parse(fmt) if name}
    try:
        return cls(**dict.fromkeys(fields, "x"))
    except TypeError:  # a few take positional arguments of their own
        required = [
            p.name
            for p in inspect.signature(cls).parameters.values()
            if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        return cls(**dict.fromkeys(required, "x"))


EXCEPTION_TYPES = s3c.botocore_exception_types()


def test_s3store_exports_the_shared_exception_table() -> None:
    assert s3_backend.EXCEPTION_TYPES is EXCEPTION_TYPES
    assert s3_backend.ERROR_CODES is ERROR_CODES
    assert s3_backend.STATUS_FALLBACK is STATUS_FALLBACK


@pytest.mark.parametrize(
    ("botocore_type", "expected"), EXCEPTION_TYPES, ids=[t.__name__ for t, _ in EXCEPTION_TYPES]
)
def test_every_botocore_exception_in_the_table_translates_to_its_type(
    translate_raw: Translate, botocore_type: type[Exception], expected: type[DocumeeRemoteError]
) -> None:
    error = translate_raw(
        _botocore_error(botocore_type), store_url="s3://b/", operation="put", key="cb/x"
    )
    assert type(error) is expected
    assert "cb/x" in str(error)


def _all_botocore_errors() -> list[type[Exception]]:
    return sorted(
        (
            cls
            for cls in vars(bce).values()
            if isinstance(cls, type) and issubclass(cls, bce.BotoCoreError)
        ),
        key=lambda c: c.__name__,
    )


@pytest.mark.parametrize("botocore_type", _all_botocore_errors(), ids=lambda c: c.__name__)
def test_no_botocore_exception_escapes_untranslated(
    translate_raw: Translate, botocore_type: type[Exception]
) -> None:
    exc = _botocore_error(botocore_type)
    error = translate_raw(exc, store_url="s3://b/", operation="get", key="k")
    assert isinstance(error, DocumeeRemoteError)
    # Only the type name, never the botocore message, unless it is known to be safe.
    assert "=x" not in str(error)


def test_param_validation_errors_never_echo_the_parameters(translate_raw: Translate) -> None:
    exc = bce.ParamValidationError(report="Invalid type for parameter Body, value: b'secret'")
    error = translate_raw(exc, store_url="s3://b/", operation="put", key="k")
    assert type(error) is ConfigurationError
    assert "secret" not in str(error)


def test_the_shared_module_imports_no_client_library() -> None:
    code = (
        "import sys\n"
        "import documee_remote.stores._s3common\n"
        "import documee_remote.stores._fsspec as m\n"
        "m.FsspecStore.from_url('memory://lazy').put('cb/k', b'v')\n"
        "assert not {'botocore', 'boto3', 's3fs', 'aiobotocore'} & set(sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


# -- the rules ------------------------------------------------------------------------------------


def test_answers_come_out_of_botocore_responses() -> None:
    assert s3c.answer_from_response({}) == S3Answer("", None)
    response = {
        "Error": {"Code": "SlowDown", "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": 503, "RetryAttempts": 2},
    }
    assert s3c.answer_from_response(response, "PutObject") == S3Answer(
        "SlowDown", 503, 2, "m", "PutObject"
    )


DENIED = S3Answer("AccessDenied", 403)


@pytest.mark.parametrize(
    ("answer", "operation", "key", "if_match", "expected"),
    [
        (DENIED, "get", "cb/k", None, True),
        (DENIED, "head", "cb/k", None, True),
        (S3Answer("", 403), "head", "cb/k", None, True),  # HEAD: no body, no code
        (DENIED, "put", "cb/k", '"e"', True),
        (DENIED, "delete", "cb/k", '"e"', True),
        (DENIED, "put", "cb/k", None, False),  # a missing key means nothing to a plain put
        (DENIED, "delete", "cb/k", None, False),
        (DENIED, "list", None, None, False),
        (S3Answer("NoSuchKey", 404), "get", "cb/k", None, False),
        (S3Answer("SlowDown", 503), "get", "cb/k", None, False),
    ],
)
def test_which_403s_may_hide_a_missing_key(
    answer: S3Answer, operation: str, key: str | None, if_match: str | None, expected: bool
) -> None:
    assert s3c.may_hide_missing_key(answer, operation, key, if_match) is expected


def test_a_prefix_listing_tells_a_missing_key() -> None:
    assert s3c.listing_shows_absent({}, "p/cb/k")
    assert s3c.listing_shows_absent({"Contents": [{"Key": "p/cb/k2"}]}, "p/cb/k")
    assert not s3c.listing_shows_absent({"Contents": [{"Key": "p/cb/k"}]}, "p/cb/k")
    hidden = s3c.missing_key(S3Answer("AccessDenied", 403, 1, "denied", "DeleteObject"))
    assert error_class(hidden.code, hidden.status) is NotFoundError
    assert (hidden.retries, hidden.call) == (1, "DeleteObject")


def test_put_parameters() -> None:
    plain, token = s3c.put_parameters("cb/analysis.json", if_match=None, create_only=False)
    assert token is None
    assert plain == {"ContentType": "application/json"}
    lease, token = s3c.put_parameters("cb/_lease.json", if_match=None, create_only=True)
    assert token is not None
    assert len(token) == 32
    assert lease["IfNoneMatch"] == "*"
    assert "IfMatch" not in lease
    assert lease["Metadata"] == {WRITE_TOKEN_METADATA: token}
    assert lease["Tagging"] == "documee-remote-kind=lease"
    delta, other = s3c.put_parameters(
        "cb/_journal/00000000000000000001.json", if_match='"e"', create_only=False
    )
    assert other not in (None, token)
    assert delta["IfMatch"] == '"e"'
    assert "IfNoneMatch" not in delta
    assert delta["Tagging"] == "documee-remote-kind=delta"
    blob, _ = s3c.put_parameters("cb/files/x.bin", if_match=None, create_only=False)
    assert blob["ContentType"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("error", "resent", "expected"),
    [
        (ServiceUnavailableError("x"), False, True),  # 5xx or dropped: may have landed
        (StorageTimeoutError("x"), False, True),
        (PreconditionFailedError("x"), False, False),  # a first attempt lost a race
        (PreconditionFailedError("x"), True, True),  # ... or met our own earlier copy
        (AlreadyExistsError("x"), True, True),
        (ConditionalRequestConflictError("x"), True, True),
        (ConflictError("x"), True, True),
        (ThrottledError("x"), True, False),
        (PermissionDeniedError("x"), True, False),
        (NotFoundError("x"), True, False),
    ],
)
def test_when_a_conditional_put_may_have_landed(
    error: DocumeeRemoteError, resent: bool, expected: bool
) -> None:
    assert s3c.may_have_landed(error, resent=resent) is expected


def test_landed_etag_recognises_only_our_token() -> None:
    head = {"ETag": '"abc"', "Metadata": {WRITE_TOKEN_METADATA: "ours"}}
    assert s3c.landed_etag(head, "ours") == '"abc"'
    assert s3c.landed_etag(head, "theirs") is None
    assert s3c.landed_etag({"ETag": '"abc"'}, "ours") is None


def test_a_retried_conditional_delete_that_finds_the_key_gone_landed() -> None:
    gone = S3Answer("NoSuchKey", 404, retries=1)
    assert s3c.delete_landed(gone, if_match='"e"')
    assert not s3c.delete_landed(S3Answer("NoSuchKey", 404), if_match='"e"')  # no retry
    assert not s3c.delete_landed(gone, if_match=None)
    assert not s3c.delete_landed(S3Answer("PreconditionFailed", 412, 1), if_match='"e"')


def test_delete_objects_errors() -> None:
    assert s3c.delete_objects_error([], batch=2, prefix="p/", store_url="s3://b/p/") is None
    missing = [{"Key": "p/cb/a", "Code": "NoSuchKey"}]
    assert s3c.delete_objects_error(missing, batch=2, prefix="p/", store_url="s3://b/p/") is None
    denied = [*missing, {"Key": "p/cb/b", "Code": "AccessDenied", "Message": "no"}]
    error = s3c.delete_objects_error(denied, batch=2, prefix="p/", store_url="s3://b/p/")
    assert type(error) is PermissionDeniedError
    assert error.key == "cb/b"
    assert "1 of 2" in str(error)


# -- live: the same requests through both stores --------------------------------------------------


def open_s3_store(s3_endpoint: S3Endpoint, backend: str, prefix: str = STORE_PREFIX) -> Store:
    """A store on ``prefix`` of the harness bucket through ``backend``: s3store or fsspec."""
    if backend == "s3store":
        return s3_endpoint.store(prefix)
    return FsspecStore.from_url(
        s3_endpoint.url(prefix), endpoint_url=s3_endpoint.endpoint_url, region=s3_endpoint.region
    )


def test_both_backends_write_the_same_object(s3_endpoint: S3Endpoint) -> None:
    client = s3_endpoint.client()
    written = {}
    for backend in ("s3store", "fsspec"):
        with open_s3_store(s3_endpoint, backend, f"{backend}/") as store:
            store.put("cb/_lease.json", b"{}", if_none_match="*")
        key = f"{backend}/cb/_lease.json"
        head = client.head_object(Bucket=s3_endpoint.bucket, Key=key)
        tags = client.get_object_tagging(Bucket=s3_endpoint.bucket, Key=key)["TagSet"]
        written[backend] = (head["ContentType"], sorted(head["Metadata"]), tags)
    assert written["s3store"] == written["fsspec"]
    assert written["s3store"] == (
        "application/json",
        [WRITE_TOKEN_METADATA],
        [{"Key": "documee-remote-kind", "Value": "lease"}],
    )


def _failure(store: Store, call: Callable[[Store], object]) -> tuple[type, str | None, str]:
    try:
        call(store)
    except DocumeeRemoteError as exc:
        # S3Store's URL ends with "/", FsspecStore's does not: the rest must match.
        root = store.url.rstrip("/")
        return type(exc), exc.key, str(exc).replace(root + "/", "<url>").replace(root, "<url>")
    raise AssertionError("no error")


def test_both_backends_fail_alike(s3_endpoint: S3Endpoint) -> None:
    calls: list[Callable[[Store], object]] = [
        lambda s: s.get("cb/missing.json"),
        lambda s: s.head("cb/missing.json"),
        lambda s: s.put("cb/k.json", b"3", if_match=etag_of(b"1")),
        lambda s: s.put("cb/k.json", b"3", if_none_match="*"),
        lambda s: s.put("cb/gone.json", b"3", if_match=etag_of(b"1")),
        lambda s: s.delete("cb/k.json", if_match=etag_of(b"1")),
        lambda s: s.delete("cb/gone.json", if_match=etag_of(b"1")),
    ]
    failures = {}
    for backend in ("s3store", "fsspec"):
        with open_s3_store(s3_endpoint, backend, f"{backend}/") as store:
            store.put("cb/k.json", b"2")
            failures[backend] = [_failure(store, call) for call in calls]
    assert failures["s3store"] == failures["fsspec"]
    assert [kind for kind, _, _ in failures["s3store"]] == [
        NotFoundError,
        NotFoundError,
        PreconditionFailedError,
        AlreadyExistsError,
        PreconditionFailedError,
        PreconditionFailedError,
        PreconditionFailedError,
    ]
