"""The events the Lambda handler accepts: their shapes, limits and validation messages."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from . import layout
from .models import FileAnalysis

#: Most inline files or source keys one event may carry (Lambda payloads are 6 MB anyway).
MAX_FILES_PER_EVENT = 5000
#: How many problems a 400 response lists.
MAX_DETAILS = 20
_MAX_DETAIL_CHARS = 300


def _codebase_id(value: str) -> str:
    return layout.validate_codebase_id(value)


def _file_path(value: str) -> str:
    return layout.validate_file_path(value)


CodebaseId = Annotated[str, AfterValidator(_codebase_id)]
FilePath = Annotated[str, AfterValidator(_file_path)]

# Inputs are never echoed in errors: events carry source code.
_CONFIG = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)


class TextFile(BaseModel):
    """An inline file given as text; stored and hashed as its UTF-8 bytes."""

    model_config = _CONFIG

    path: FilePath
    content: str

    @property
    def data(self) -> bytes:
        """The file's bytes."""
        return self.content.encode("utf-8", "surrogatepass")


def _b64(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("content_base64 is not valid base64") from None


class Base64File(BaseModel):
    """An inline file given as base64 (any bytes: other encodings, binary)."""

    model_config = _CONFIG

    path: FilePath
    content_base64: bytes

    @model_validator(mode="before")
    @classmethod
    def _decode(cls, data: Any) -> Any:
        if isinstance(data, dict) and "content_base64" in data:
            return {**data, "content_base64": _b64(data["content_base64"])}
        return data

    @property
    def data(self) -> bytes:
        """The file's bytes."""
        return self.content_base64


def _file_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "content_base64" in value:
            return "base64"
        if "content" in value:
            return "text"
    return None


InlineFile = Annotated[
    Annotated[TextFile, Tag("text")] | Annotated[Base64File, Tag("base64")],
    Discriminator(
        _file_kind,
        custom_error_type="file_shape",
        custom_error_message="a file needs 'path' and either 'content' or 'content_base64'",
    ),
]


class PrefixMap(BaseModel):
    """How source-bundle keys become stored paths: drop ``strip``, then add ``prepend``."""

    model_config = _CONFIG

    strip: str = ""
    prepend: str = ""


class SourceBundle(BaseModel):
    """Files to fetch from S3: ``keys`` of ``bucket``, named by ``prefix_map``.

    Without a ``prefix_map`` the key itself is the stored path.
    """

    model_config = _CONFIG

    bucket: str = Field(min_length=3, max_length=63)
    keys: list[str] = Field(min_length=1, max_length=MAX_FILES_PER_EVENT)
    prefix_map: PrefixMap = PrefixMap()

    @model_validator(mode="after")
    def _check_keys(self) -> SourceBundle:
        strip = self.prefix_map.strip
        for key in self.keys:
            if not key:
                raise ValueError("source keys must not be empty")
            if not key.startswith(strip):
                raise ValueError(f"source key {key!r} does not start with strip {strip!r}")
            layout.validate_file_path(self.path_of(key))
        return self

    def path_of(self, key: str) -> str:
        """The stored path of a key."""
        return self.prefix_map.prepend + key[len(self.prefix_map.strip) :]


class AnalyseEvent(BaseModel):
    """Analyse inline files and/or a source bundle, and merge the results."""

    model_config = _CONFIG

    action: Literal["analyse", "analyze"]
    codebase_id: CodebaseId
    files: list[InlineFile] = Field(default_factory=list, max_length=MAX_FILES_PER_EVENT)
    source: SourceBundle | None = None
    removed: list[FilePath] = Field(default_factory=list)
    analyser: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AnalyseEvent:
        if not self.files and self.source is None and not self.removed:
            raise ValueError("nothing to do: give 'files', 'source' or 'removed'")
        paths = [f.path for f in self.files]
        if self.source is not None:
            paths += [self.source.path_of(k) for k in self.source.keys]
        seen: set[str] = set()
        for path in paths:
            if path in seen:
                raise ValueError(f"file {path!r} is given twice")
            seen.add(path)
        both = seen.intersection(self.removed)
        if both:
            raise ValueError(f"file {sorted(both)[0]!r} is both given and removed")
        return self


class MergeEvent(BaseModel):
    """Merge analyses computed elsewhere (``file_hashes`` only for paths in ``file_analyses``)."""

    model_config = _CONFIG

    action: Literal["merge"]
    codebase_id: CodebaseId
    file_analyses: dict[FilePath, FileAnalysis] = Field(default_factory=dict)
    file_hashes: dict[FilePath, str] = Field(default_factory=dict)
    removed: list[FilePath] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> MergeEvent:
        if not self.file_analyses and not self.removed:
            raise ValueError("nothing to merge: give 'file_analyses' or 'removed'")
        return self


class CompactEvent(BaseModel):
    """Compact a codebase (``PersistenceManager.compact``); without ``codebase_id``, every
    codebase of the store, as the Terraform module's schedule sends it."""

    model_config = _CONFIG

    action: Literal["compact"]
    codebase_id: CodebaseId | None = None


class VerifyEvent(BaseModel):
    """Check a codebase's invariants (``PersistenceManager.verify``), optionally repairing."""

    model_config = _CONFIG

    action: Literal["verify"]
    codebase_id: CodebaseId
    repair: bool = False


#: Any event, told apart by ``action``.
Event: TypeAlias = Annotated[
    AnalyseEvent | MergeEvent | CompactEvent | VerifyEvent, Field(discriminator="action")
]
_EVENT = TypeAdapter[AnalyseEvent | MergeEvent | CompactEvent | VerifyEvent](Event)


def parse_event(event: Any) -> AnalyseEvent | MergeEvent | CompactEvent | VerifyEvent:
    """Validate a raw event; raises pydantic's ``ValidationError`` (inputs hidden)."""
    return _EVENT.validate_python(event)


def _describe(exc: ValidationError) -> list[str]:
    """``"loc: message"`` per problem: locations and rules, never the values."""
    details = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"]) or "(event)"
        message = err["msg"].removeprefix("Value error, ")
        detail = f"{loc}: {message}"
        # Messages may quote a bad tag; keep any such echo short.
        details.append(
            detail if len(detail) <= _MAX_DETAIL_CHARS else detail[:_MAX_DETAIL_CHARS] + "..."
        )
    if len(details) > MAX_DETAILS:
        details = [*details[:MAX_DETAILS], f"... and {len(details) - MAX_DETAILS} more"]
    return details
