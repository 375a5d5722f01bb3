"""Keep credentials and object bodies out of log output.

botocore's DEBUG logging prints every request's headers (the session token
in ``X-Amz-Security-Token``, the access key id in ``Authorization``), the
canonical request it signs, and raw response bodies (an STS ``AssumeRole``
answer carries a secret access key). :class:`RedactingFilter` scrubs a log
record before any handler formats it:

* values of ``Authorization``, ``X-Amz-Security-Token``, ``X-Amz-Credential``,
  ``X-Amz-Signature`` and of credential fields (``aws_secret_access_key``,
  ``SessionToken``, ``SecretAccessKey``, ...) in ``name: value``,
  ``name=value``, ``'name': b'value'``, JSON and XML forms;
* anything that looks like an AWS access key id (``AKIA...``, ``ASIA...``),
  a 40-character secret access key (mixed-case base64), or a session token
  (a mixed-case base64 run of 80 characters or more);
* request and response bodies botocore logs (``'body': ...`` in its request
  dictionaries and ``Response body:`` records), which may be object bodies,
  replaced by their size; XML protocol answers are kept, scrubbed;
* any exact string registered with :meth:`RedactingFilter.add_secret`.

The message is formatted once (``msg % args``), scrubbed, and stored back
with no arguments, so handlers see only the scrubbed text; a traceback
attached to the record is formatted and scrubbed too.

A filter attached to a logger only sees records logged on that very logger,
not those of its children (``botocore.endpoint`` propagates to handlers
without passing ``botocore``'s filters). :func:`install_redaction` therefore
attaches the filter to the named loggers *and* wraps the log record factory,
so every record of those loggers and their descendants, created later or
earlier, is scrubbed when it is made. The cost is paid only for records that
are actually emitted (a disabled DEBUG level never creates them)::

    from documee_remote.redact import install_redaction
    install_redaction()   # botocore, boto3, urllib3, s3fs, aiobotocore, documee_remote
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_LOGGERS",
    "REDACTED",
    "RedactingFilter",
    "install_redaction",
    "redact_text",
    "uninstall_redaction",
]

#: The loggers :func:`install_redaction` covers by default (and their descendants).
DEFAULT_LOGGERS: tuple[str, ...] = (
    "botocore",
    "boto3",
    "urllib3",
    "s3fs",
    "aiobotocore",
    "documee_remote",
)

#: What a scrubbed value is replaced by.
REDACTED = "***"

_B64 = "A-Za-z0-9/+"
# Credential-bearing names, matched case-insensitively, as a header, a
# keyword argument, a dict key, a JSON member or a query parameter.
_CREDENTIAL_FIELDS = (
    r"x-amz-security-token|x-amz-credential|x-amz-signature|"
    r"aws_secret_access_key|aws_session_token|aws_security_token|"
    r"secret_access_key|secretaccesskey|secret_key|secretkey|"
    r"session_token|sessiontoken|security_token|securitytoken|"
    r"external_id|externalid|password|passwd|secret"
)
# name, then the separator as it is written: "name: ", "name=", "'name': b'", "\"name\": \""
_SEPARATOR = r"""['"]?\s*[:=]\s*b?['"]?"""
_NAMED_VALUE = re.compile(
    rf"(?i)(\b(?:{_CREDENTIAL_FIELDS}){_SEPARATOR})([^\s'\"&,;}}<>)\]]+)",
)
# Authorization values contain spaces ("AWS4-HMAC-SHA256 Credential=..., Signature=...").
_AUTHORIZATION = re.compile(rf"""(?i)(\bauthorization{_SEPARATOR})([^'"\r\n]+)""")
_XML_SECRET = re.compile(
    r"(?i)(<(SecretAccessKey|SessionToken|AccessKeyId|Token|Signature|ExternalId)>)([^<]*)(</)"
)
_ACCESS_KEY_ID = re.compile(
    r"\b(?:AKIA|ASIA|AROA|AIDA|ANPA|ANVA|AIPA|ABIA|ACCA|AGPA|APKA)[A-Z0-9]{12,}\b"
)
# A run of base64 characters exactly 40 long (a secret access key), or 80+ (a token).
_B64_RUN = re.compile(rf"(?<![{_B64}])(?:[{_B64}]{{40}}|[{_B64}]{{80,}}={{0,2}})(?![{_B64}=])")
_BODY_KEY = re.compile(
    r"""(['"]body['"]\s*:\s*)b?(['"])(?!<\d+ bytes redacted>)(.*?)(?<!\\)\2""", re.S
)


def _looks_secret(run: str) -> bool:
    # Real secrets mix upper and lower case; hex digests, words and paths rarely do
    # over 40 characters without a separator (paths have "/" but rarely both cases
    # and digits in one 40-character run).
    has_upper = any(c.isupper() for c in run)
    has_lower = any(c.islower() for c in run)
    has_digit = any(c.isdigit() for c in run)
    return has_upper and has_lower and (has_digit or "+" in run or "/" in run)


def _scrub_b64(match: re.Match[str]) -> str:
    run = match.group(0)
    return REDACTED if _looks_secret(run) else run


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials, and every string in ``secrets``, replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _NAMED_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _XML_SECRET.sub(lambda m: m.group(1) + REDACTED + m.group(4), text)
    text = _ACCESS_KEY_ID.sub(REDACTED, text)
    return _B64_RUN.sub(_scrub_b64, text)


def _size(value: object) -> str:
    try:
        return f"<{len(value)} bytes redacted>"  # type: ignore[arg-type]
    except TypeError:
        return "<body redacted>"


def _is_protocol_xml(value: object) -> bool:
    if isinstance(value, bytes | bytearray):
        head = bytes(value[:64]).lstrip()
        return head.startswith(b"<")
    return isinstance(value, str) and value.lstrip().startswith("<")


def _redact_arg(value: object) -> object:
    """Replace bodies inside one logging argument (botocore's request dicts)."""
    if isinstance(value, Mapping) and "body" in value:
        body = value["body"]
        if isinstance(body, bytes | bytearray | str) and body:
            replaced = dict(value)
            replaced["body"] = _size(body)
            return replaced
    return value


class RedactingFilter(logging.Filter):
    """A :class:`logging.Filter` that scrubs credentials and bodies from every record.

    It never drops a record (``filter`` returns True); it rewrites
    ``record.msg`` to the scrubbed, fully formatted message, clears
    ``record.args``, and pre-formats a scrubbed ``exc_text`` and
    ``stack_info``. Records are only scrubbed once.
    """

    def __init__(self, name: str = "", *, secrets: Iterable[str] = ()) -> None:
        super().__init__(name)
        self._secrets: set[str] = {s for s in secrets if s}
        self._lock = threading.Lock()

    def add_secret(self, value: str) -> None:
        """Also scrub this exact string (an external id, a password) wherever it appears."""
        if value:
            with self._lock:
                self._secrets.add(value)

    @property
    def secrets(self) -> frozenset[str]:
        """The exact strings registered with :meth:`add_secret`."""
        with self._lock:
            return frozenset(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; always keep it."""
        if getattr(record, "_documee_redacted", False):
            return True
        secrets = self.secrets
        message = self._message(record)
        record.msg = redact_text(message, secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, secrets)
        setattr(record, "_documee_redacted", True)  # noqa: B010 - LogRecord has no such field
        return True

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        msg = str(record.msg)
        args: Any = record.args
        if msg.startswith("Response body") and args:
            # botocore.parsers: "Response body:\n%r" with the raw bytes. XML is the
            # S3/STS protocol (scrubbed below); anything else may be an object body.
            values = args if isinstance(args, tuple) else (args,)
            args = tuple(v if _is_protocol_xml(v) else _size(v) for v in values)
        elif isinstance(args, tuple):
            args = tuple(_redact_arg(a) for a in args)
        elif isinstance(args, Mapping):
            args = _redact_arg(args)
        try:
            text = msg % args if args else msg
        except (TypeError, ValueError, KeyError):
            text = f"{msg} {args!r}"
        # Bodies that reached the text some other way ('body': b'...').
        return _BODY_KEY.sub(lambda m: m.group(1) + repr(_size(m.group(3))), text)


# -- installing ---------------------------------------------------------------------------------

_install_lock = threading.Lock()
_filter: RedactingFilter | None = None
_covered: set[str] = set()
_previous_factory: Callable[..., logging.LogRecord] | None = None


def _covers(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in _covered)


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _previous_factory is not None
    record = _previous_factory(*args, **kwargs)
    current = _filter
    if current is not None and _covers(record.name):
        current.filter(record)
    return record


def install_redaction(
    logger_names: Iterable[str] = DEFAULT_LOGGERS, *, secrets: Iterable[str] = ()
) -> RedactingFilter:
    """Scrub every record of ``logger_names`` and their descendants; idempotent.

    Returns the process-wide :class:`RedactingFilter` (the same one on every
    call); further calls add loggers and ``secrets`` to it.
    """
    global _filter, _previous_factory  # noqa: PLW0603 - one process-wide installation
    with _install_lock:
        if _filter is None:
            _filter = RedactingFilter()
        for secret in secrets:
            _filter.add_secret(secret)
        for name in logger_names:
            _covered.add(name)
            logger = logging.getLogger(name)
            if _filter not in logger.filters:
                logger.addFilter(_filter)
        if logging.getLogRecordFactory() is not _redacting_factory:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_factory)
        return _filter


def uninstall_redaction() -> None:
    """Undo :func:`install_redaction` (for tests)."""
    global _filter, _previous_factory  # noqa: PLW0603
    with _install_lock:
        if _filter is not None:
            for name in _covered:
                logging.getLogger(name).removeFilter(_filter)
        if logging.getLogRecordFactory() is _redacting_factory and _previous_factory is not None:
            logging.setLogRecordFactory(_previous_factory)
        _previous_factory = None
        _filter = None
        _covered.clear()
