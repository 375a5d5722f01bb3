"""Documee's own objects in, this library's models out: the one conversion at the edge.

Documee's engine hands :class:`~documee_remote.PersistenceManager` its own
dataclasses (``src/models/analysis_models.py``, and the dependency analyser's
graph classes), and after an incremental run that loaded through this library
it hands over *mixed* trees: a Documee ``CodebaseAnalysis`` whose
``file_analyses`` hold this library's :class:`~documee_remote.models.FileAnalysis`
objects for the files it reused. Callers of this library may also pass plain
dicts (``json.loads`` of a file). Every method of the manager that takes
analyses converts them here, once, on the way in; everything behind it deals
with this library's models only.

The conversion goes through the object's own ``to_dict()``, which is exactly
what Documee's persistence writes with ``json.dump(obj.to_dict(), indent=2,
ensure_ascii=False)``. The models keep field order, unknown fields and the
``int``/``float`` distinction, so the bytes written afterwards equal the bytes
Documee's own class would have written.

This library's models pass through untouched (no copy, no validation), after a
check of two levels of children (a codebase's direct children and each file
analysis's), which is where Documee's code and a caller's
``update_analysis`` function put their own objects into a loaded tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from pydantic import ValidationError

from . import _pieces, codec
from .errors import InvalidKeyError
from .models import AnalysisModel, CodebaseAnalysis, FileAnalysis

__all__ = [
    "AnalysisInput",
    "FileAnalysisInput",
    "SupportsToDict",
    "as_codebase_analysis",
    "as_file_analyses",
    "as_file_analysis",
]


@runtime_checkable
class SupportsToDict(Protocol):
    """Anything with upstream's ``to_dict()``: Documee's dataclasses, this library's models."""

    def to_dict(self) -> Mapping[str, Any]:
        """The JSON-ready dict the object is written as."""
        ...


#: What the manager accepts where a whole analysis comes in.
AnalysisInput: TypeAlias = CodebaseAnalysis | SupportsToDict | Mapping[str, Any]
#: What the manager accepts where one file's analysis comes in.
FileAnalysisInput: TypeAlias = FileAnalysis | SupportsToDict | Mapping[str, Any]

_M = TypeVar("_M", bound=AnalysisModel)

# What a JSON value can be made of; anything else inside a tree is somebody's object.
_PLAIN = (str, int, float, bool, type(None), dict, list, tuple)


def as_codebase_analysis(obj: object, *, codebase_id: str) -> CodebaseAnalysis:
    """``obj`` as this library's :class:`CodebaseAnalysis`, converting Documee's objects.

    Raises
    ------
    InvalidKeyError
        ``obj`` is not an analysis (not a model, nothing with ``to_dict()``,
        not a dict), or its data do not have an analysis's shape; the message
        names the codebase and the first offending field, never a value.
    """
    if isinstance(obj, CodebaseAnalysis) and not _holds_foreign(obj, depth=2):
        return obj
    return _convert(CodebaseAnalysis, obj, codebase_id, "the analysis")


def as_file_analysis(
    obj: object, *, codebase_id: str, file_path: str | None = None
) -> FileAnalysis:
    """``obj`` as this library's :class:`FileAnalysis`; see :func:`as_codebase_analysis`."""
    if isinstance(obj, FileAnalysis) and not _holds_foreign(obj, depth=1):
        return obj
    what = "the file analysis" if file_path is None else f"the analysis of {file_path!r}"
    return _convert(FileAnalysis, obj, codebase_id, what)


def as_file_analyses(
    analyses: Mapping[str, object], *, codebase_id: str
) -> Mapping[str, FileAnalysis]:
    """``{path: analysis}`` with every value converted; ``analyses`` itself when none needs it."""
    if not isinstance(analyses, Mapping):
        raise InvalidKeyError(
            f"file analyses must be a mapping of file path to analysis, "
            f"not {type(analyses).__name__}",
            codebase_id=codebase_id,
        )
    converted: dict[str, FileAnalysis] | None = None
    for index, (path, fa) in enumerate(analyses.items()):
        new = as_file_analysis(fa, codebase_id=codebase_id, file_path=path)
        if converted is None and new is not fa:
            # First value that needed converting: copy the ones before it as they are.
            converted = dict(list(analyses.items())[:index])  # type: ignore[arg-type]
        if converted is not None:
            converted[path] = new
    if converted is None:
        return analyses  # type: ignore[return-value]  # every value is a FileAnalysis
    return converted


#: From this many file analyses, a conversion pauses the collector (see codec.building).
_LARGE_FILES = 64


def _convert(cls: type[_M], obj: object, codebase_id: str, what: str) -> _M:
    if isinstance(obj, cls):
        # One of ours holding somebody's objects: rebuild from its fields, in order.
        data: Any = dict(obj)  # declared fields, then unknown ones
    elif isinstance(obj, AnalysisModel):
        raise InvalidKeyError(
            f"{what} must be a {cls.__name__}, not this library's {type(obj).__name__}",
            codebase_id=codebase_id,
        )
    elif isinstance(obj, Mapping):
        data = obj
    elif callable(getattr(obj, "to_dict", None)):
        data = obj.to_dict()  # type: ignore[attr-defined]
        if not isinstance(data, Mapping):
            raise InvalidKeyError(
                f"{what}: {type(obj).__name__}.to_dict() returned "
                f"{type(data).__name__}, not a dict",
                codebase_id=codebase_id,
            )
    else:
        raise InvalidKeyError(
            f"{what} must be a documee_remote {cls.__name__}, an object with to_dict() "
            f"(Documee's own classes) or a dict, not {type(obj).__name__}",
            codebase_id=codebase_id,
        )
    # Entry by entry (the caller's data untouched), the collector paused for a big
    # one: one call, or collections walking what it builds, stall an event loop.
    files = data.get("file_analyses") if isinstance(data, Mapping) else None
    try:
        with codec.building(isinstance(files, Mapping) and len(files) >= _LARGE_FILES):
            return _pieces.validate_pieces(cls, data, _pieces.SPLIT_DEPTH, consume=False)
    except ValidationError:
        # Somebody's objects inside the data (a dict holding Documee dataclasses,
        # a to_dict() that leaves children as objects): make it plain and try again.
        # Only on this path, so the usual case pays for one validation only.
        pass
    try:
        return cls.model_validate(_plain(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InvalidKeyError(
            f"{what} ({type(obj).__name__}) is not a valid {cls.__name__}: "
            f"{exc.error_count()} error(s), first at {where}: {first['msg']}",
            codebase_id=codebase_id,
        ) from None


def _plain(value: Any) -> Any:
    """``value`` with every object turned into what its ``to_dict()`` gives.

    This library's models stay as they are (pydantic takes them as they are),
    unless they hold foreign objects themselves.
    """
    if isinstance(value, AnalysisModel):
        if not _holds_foreign(value, depth=1):
            return value
        return _plain(dict(value))
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        # top_teaching_files pairs are tuples in Documee; the codec writes them as lists.
        return tuple(_plain(v) for v in value)
    if not isinstance(value, _PLAIN) and callable(getattr(value, "to_dict", None)):
        return _plain(value.to_dict())
    return value


def _foreign(value: object) -> bool:
    return not isinstance(value, AnalysisModel) and not isinstance(value, _PLAIN)


def _holds_foreign(model: AnalysisModel, *, depth: int) -> bool:
    """Whether ``model``'s fields, or the dicts and lists they hold, hold foreign objects.

    ``depth`` 2 also looks inside the models found at the first level.
    """
    for value in model.__dict__.values():
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            children = (value,)
        for child in children:
            if _foreign(child):
                return True
            if depth > 1 and isinstance(child, AnalysisModel) and _holds_foreign(child, depth=1):
                return True
    return False
