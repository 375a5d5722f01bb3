"""The exact, fast JSON layer between stored bytes and the analysis models.

Upstream Documee writes every object with
``json.dump(obj, f, indent=2, ensure_ascii=False)`` into a UTF-8 file. The
writers here produce **the same bytes**, for any JSON-compatible value, so a
load and a save of an untouched object changes nothing on disk (ETags stay the
same, diffs stay empty). With ``indent`` set, the standard library falls back
to its pure-Python encoder, which needs seconds for a large analysis; these
functions use orjson and pydantic-core instead and correct the few places
where their output differs from Python's.

Writing
-------
:func:`dumps` takes orjson's ``OPT_INDENT_2`` output, which matches
``json.dumps(indent=2, ensure_ascii=False)`` token for token (same layout,
same string escapes: only ``"``, ``\\`` and C0 controls are escaped, with the
same short forms and lowercase ``\\u00XX``; raw UTF-8 otherwise, U+2028/2029,
U+007F and ``/`` included), with three exceptions, each handled:

* **Float spelling.** Both print the shortest digits that round-trip, but orjson
  writes ``0.00001`` and ``1e-7`` where Python writes ``1e-05`` and ``1e-07``
  (only for magnitudes below 1e-4; elsewhere the spellings agree). Such
  tokens are rewritten as ``repr(float(token))``. Finding them needs no JSON
  parser: in indented output every scalar sits at the end of its own line
  (after the indent or after ``": "``), and strings can never end a line with
  a digit because they end with ``"`` and never contain a raw newline
  (control characters are always escaped). So a run of number characters
  that ends a line, optionally followed by ``,``, and starts after a space or
  at the start of the document is a number token, never text inside a string
  or a key, even keys containing ``": `` or escaped quotes. The rewrite is
  idempotent, so tokens already spelled Python's way are harmless
  candidates. The scan costs about 1.3 ms per MB and only runs when the walk
  below saw a float outside [1e-3, 1e15).
* **NaN and ±Infinity.** orjson writes ``null``, which cannot be told apart
  from ``None`` afterwards; a walk over the value (iterative, about 2.5 ms
  per MB) finds them first and sends such values to the standard library.
* **What orjson refuses**: integers beyond 64 bits, strings with surrogates,
  non-``str`` keys, nesting deeper than 255 and cycles. orjson raises and
  the standard library takes over, giving exactly its result, including its
  exceptions (a lone surrogate makes the reference raise
  ``UnicodeEncodeError`` when it encodes to UTF-8, and so does :func:`dumps`).

The walk also accepts only exact ``dict``/``list``/``tuple``/``str``/``int``/
``bool``/``float``/``None``, so subclasses (``IntEnum``, ``namedtuple``) and
anything orjson would serialize where the standard library would not (enums,
UUIDs, dataclasses, datetimes) go to the standard library too.

:func:`dumps_model` serializes the analysis models with pydantic-core straight
from the model instances (no intermediate dicts), configured to write NaN and
Infinity as Python does, then always applies the float correction (there is
no walk to tell whether it is needed): same bytes as
``dumps(model.to_dict())`` as long as the free-form values inside a model
(``metadata``, ``factors``, unknown fields) are JSON data with ``str`` keys,
which they always are after a load.

Reading
-------
:func:`loads` parses with pydantic-core's JSON parser, which keeps integers of
any size exact (orjson silently turns them into floats) and accepts ``NaN`` and
``Infinity`` as Python's json does, at about 1.3x the input size in memory. What
it refuses but Python accepts (escaped lone surrogates, nesting past 200
levels, numbers that overflow to infinity) is retried with the standard
library; anything still unreadable raises
:class:`~documee_remote.errors.CorruptObjectError` naming the key and the
codebase, never returns ``None``. The typed loaders validate the parsed value
into the models and report a wrong shape the same way, with the first few
failing locations and never the object body.

Cyclic garbage collection is paused while a large object is parsed and
validated: parsing creates millions of container objects and no cycles, and
the collector's repeated passes over them would otherwise triple the time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
import pydantic_core
from pydantic import BaseModel, ValidationError

from . import _pieces
from .errors import CorruptObjectError
from .models import AnalysisModel, CodebaseAnalysis, FileAnalysis

__all__ = [
    "dump_codebase_analysis",
    "dump_file_analysis",
    "dump_file_hashes",
    "dumps",
    "dumps_model",
    "load_codebase_analysis",
    "load_file_analysis",
    "load_file_hashes",
    "loads",
]

_M = TypeVar("_M", bound=AnalysisModel)

# Below this many bytes the collector costs nothing worth a global toggle.
_GC_PAUSE_MIN_BYTES = 1 << 20
# How many validation errors a CorruptObjectError message lists.
_MAX_ERRORS_SHOWN = 3
_MAX_LOC_CHARS = 160

_ORJSON_OPTIONS = orjson.OPT_INDENT_2

# Byte strings marking the float tokens orjson/pydantic-core spell differently
# from repr(): "0.00001" (Python: "1e-05") and "1e-7" (Python: "1e-07"). Large
# exponents ("1e+16") and everything in between are spelled alike; the tests
# check that over random doubles, so a new orjson that changes it is caught.
_EXP_MARKER = b"e-"
_SMALL_MARKER = b"0.0000"
_DIGITS_TO_EOL = re.compile(rb"[0-9]+(?=,?(?:\n|\Z))")
_DIGITS0_TO_EOL = re.compile(rb"[0-9]*(?=,?(?:\n|\Z))")
# Floats inside this range print in plain decimal notation, identically in
# repr() and orjson; outside it (zero aside) the output has to be scanned.
# The margins are generous: repr switches notation at 1e-4 and 1e16.
_PLAIN_FLOAT_MIN = 1e-3
_PLAIN_FLOAT_MAX = 1e15
_JSON_FLOAT = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")

_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_restore = False


@contextmanager
def _gc_paused(size: int) -> Iterator[None]:
    """Pause cyclic GC for a large parse; nested and concurrent users share one pause.

    The last user to leave restores the state the first one found, so a
    process that runs with GC disabled is left alone.
    """
    global _gc_pausers, _gc_restore  # noqa: PLW0603
    if size < _GC_PAUSE_MIN_BYTES:
        yield
        return
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_restore = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_restore:
                _promote_young()
                gc.enable()


def building(large: bool) -> contextlib.AbstractContextManager[None]:
    """Pause cyclic GC while a large analysis is built from in-memory data (interop).

    The same pause, and the same promotion after it, as a large parse gets.
    """
    return _gc_paused(_GC_PAUSE_MIN_BYTES if large else 0)


def _promote_young() -> None:
    """Move the objects made during the pause to the oldest generation, without a pass.

    Every object the parse created sits in the youngest generation, and the
    first collection after the pause would walk all of them, and pass them on
    to be walked again by the next generations: 80-170 ms with every thread
    stopped for a 22 MB analysis, whatever the parse did to stay responsive.
    ``gc.freeze()`` + ``gc.unfreeze()`` moves every tracked object to the
    oldest generation in O(1) (two list splices) and does not count them as
    newly promoted, so this load triggers no collection; cyclic garbage made
    meanwhile (by any thread) waits for the next full collection instead of a
    young one. Skipped when the process uses ``gc.freeze()`` itself (a
    pre-fork server): unfreezing would undo its freeze.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


# --------------------------------------------------------------------- writing


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


def _check_plain_json(obj: Any) -> bool | None:
    """Whether orjson's output for ``obj`` is exact, and whether it needs respelling.

    Returns None if ``obj`` holds anything but exact JSON types and finite
    floats (NaN and Infinity become ``null`` in orjson), True if it holds a
    float that orjson may spell differently from repr(), False otherwise.

    Keys are not checked: orjson refuses every non-``str`` key (``str``
    subclasses included) by itself. Only called once orjson succeeded, which
    also proves the value is acyclic and shallow.
    """
    respell = False
    stack = [obj]
    pop = stack.pop
    extend = stack.extend
    while stack:
        x = pop()
        t = type(x)
        if t is str or t is int or t is bool or x is None:
            continue
        if t is dict:
            extend(x.values())
        elif t is list or t is tuple:
            extend(x)
        elif t is float:
            # Comparisons with NaN are false, so NaN lands here too.
            if not (_PLAIN_FLOAT_MIN <= abs(x) < _PLAIN_FLOAT_MAX):
                if x - x != 0.0:  # inf - inf and nan - nan are nan
                    return None
                if x != 0.0:
                    respell = True
        else:
            return None
    return respell


def _fix_floats(out: bytes) -> bytes:
    """Respell the float tokens of indented JSON as Python's ``repr`` does.

    See the module docstring for why matching a line-final number run is safe.
    """
    edits: dict[int, tuple[int, bytes]] = {}
    find = out.find
    i = find(_EXP_MARKER)
    while i != -1:
        # A number's exponent marker follows a digit and precedes digits that
        # run to the end of the line (or to a final comma).
        if i > 0 and 48 <= out[i - 1] <= 57:
            tail = _DIGITS_TO_EOL.match(out, i + 2)
            if tail is not None:
                _note_float(out, i, tail.end(), edits)
        i = find(_EXP_MARKER, i + 2)
    i = find(_SMALL_MARKER)
    while i != -1:
        tail = _DIGITS0_TO_EOL.match(out, i + len(_SMALL_MARKER))
        if tail is not None:
            _note_float(out, i, tail.end(), edits)
        i = find(_SMALL_MARKER, i + 1)
    if not edits:
        return out
    parts: list[bytes] = []
    pos = 0
    for start in sorted(edits):
        end, text = edits[start]
        parts.append(out[pos:start])
        parts.append(text)
        pos = end
    parts.append(out[pos:])
    return b"".join(parts)


def _note_float(out: bytes, inside: int, end: int, edits: dict[int, tuple[int, bytes]]) -> None:
    # The token starts after the last space before it: number tokens contain
    # none, and an indent or ": " always precedes a line-final scalar unless
    # the scalar is the whole document (then rfind gives -1 and start is 0).
    start = out.rfind(b" ", 0, inside) + 1
    if start in edits or _JSON_FLOAT.fullmatch(out, start, end) is None:
        return
    token = out[start:end]
    fixed = repr(float(token)).encode("ascii")
    if fixed != token:
        edits[start] = (end, fixed)


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` exactly as upstream Documee writes it, but fast.

    The result is byte-identical to
    ``json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")`` for every
    value, and raises what that expression raises (``TypeError`` for values
    JSON cannot hold, ``ValueError`` for cycles, ``UnicodeEncodeError`` for
    strings with surrogates). Values made of plain ``dict`` (``str`` keys),
    ``list``, ``tuple``, ``str``, ``int`` (up to 64 bits), ``bool``, ``None``
    and finite ``float`` take the fast path; anything else is written by the
    standard library.
    """
    try:
        out = orjson.dumps(obj, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _stdlib_dumps(obj)
    respell = _check_plain_json(obj)
    if respell is None:
        return _stdlib_dumps(obj)
    return _fix_floats(out) if respell else out


def dumps_model(model: BaseModel) -> bytes:
    """Serialize a model as upstream would write its ``to_dict()``.

    Analysis models (:class:`~documee_remote.models.AnalysisModel`) are written
    by pydantic-core directly from the instances: fields in declaration order,
    unknown fields after them, ``int``/``float`` as held, NaN and Infinity as
    Python spells them. Any other pydantic model goes through
    ``model_dump(mode="python")`` and :func:`dumps`.
    """
    if not isinstance(model, AnalysisModel):
        return dumps(model.model_dump(mode="python", by_alias=True))
    try:
        if isinstance(model, CodebaseAnalysis):
            # The one large model: written in pieces so that no call holds the GIL
            # for long (smaller ones are faster in one call).
            pieces: list[bytes] = []
            with contextlib.suppress(_pieces.NoSplitError):
                _pieces.dump_pieces(model, b"", pieces, _pieces.SPLIT_DEPTH, _model_json)
                return b"".join(pieces)
        return _model_json(model)
    except (pydantic_core.PydanticSerializationError, orjson.JSONEncodeError):
        # Surrogates, or a value someone assigned that JSON cannot hold: let
        # the standard library produce its exact result or its exact error.
        return _stdlib_dumps(model.to_dict())


def _model_json(model: BaseModel) -> bytes:
    out = type(model).__pydantic_serializer__.to_json(
        model, indent=2, by_alias=True, warnings=False
    )
    return _fix_floats(out)


def dump_codebase_analysis(analysis: CodebaseAnalysis) -> bytes:
    """The bytes of ``analysis.json`` for ``analysis``, as upstream writes them."""
    if not isinstance(analysis, CodebaseAnalysis):
        raise TypeError(f"expected a CodebaseAnalysis, not {type(analysis).__name__}")
    return dumps_model(analysis)


def dump_file_analysis(file_analysis: FileAnalysis) -> bytes:
    """The bytes of a ``file_<h16>.json`` for ``file_analysis``, as upstream writes them."""
    if not isinstance(file_analysis, FileAnalysis):
        raise TypeError(f"expected a FileAnalysis, not {type(file_analysis).__name__}")
    return dumps_model(file_analysis)


def dump_file_hashes(hashes: Mapping[str, str]) -> bytes:
    """The bytes of ``file_hashes.json``: ``{file path: sha256 hex}`` in the given order."""
    return dumps(hashes if type(hashes) is dict else dict(hashes))


# --------------------------------------------------------------------- reading


def _where(key: str | None, codebase_id: str | None) -> str:
    if codebase_id is None and key is not None and "/" in key:
        codebase_id = key.split("/", 1)[0]
    where = f"object {key!r}" if key is not None else "object"
    if codebase_id is not None:
        where += f" of codebase {codebase_id!r}"
    return where


def _corrupt(problem: str, key: str | None, codebase_id: str | None) -> CorruptObjectError:
    return CorruptObjectError(
        f"corrupt {_where(key, codebase_id)}: {problem}", key=key, codebase_id=codebase_id
    )


def _json_type(obj: Any) -> str:
    if isinstance(obj, dict):
        return "an object"
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, int | float):
        return "a number"
    return "null"


def _summarize(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    shown = []
    for err in errors[:_MAX_ERRORS_SHOWN]:
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if len(loc) > _MAX_LOC_CHARS:
            half = _MAX_LOC_CHARS // 2
            loc = loc[:half] + "..." + loc[-half:]
        shown.append(f"{loc}: {err['msg']}")
    more = len(errors) - len(shown)
    suffix = f"; and {more} more" if more else ""
    plural = "s" if len(errors) != 1 else ""
    return f"{len(errors)} error{plural}: " + "; ".join(shown) + suffix


def _parse(data: bytes | bytearray, key: str | None, codebase_id: str | None) -> Any:
    if not data:
        raise _corrupt("it is empty (0 bytes)", key, codebase_id)
    if len(data) > _pieces.PIECE_BYTES:
        try:
            return _pieces.parse_pieces(data, 0, len(data), 0, _pieces.PARSE_DEPTH)
        except ValueError:
            pass  # not laid out as expected, or not JSON: one call decides
    try:
        return pydantic_core.from_json(data)
    except ValueError:
        pass
    # pydantic-core is stricter than Python's json in a few corners (escaped
    # lone surrogates, nesting past 200, numbers that overflow to infinity);
    # upstream reads with json.load on UTF-8 text, so that decides.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _corrupt(f"not valid UTF-8 (at byte {exc.start})", key, codebase_id) from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _corrupt(f"not valid JSON ({exc})", key, codebase_id) from exc


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes | bytearray:
    if isinstance(data, bytes | bytearray):
        return data
    if isinstance(data, memoryview):
        return data.tobytes()
    raise TypeError(f"expected bytes, not {type(data).__name__}")


def loads(
    data: bytes | bytearray | memoryview,
    *,
    key: str | None = None,
    codebase_id: str | None = None,
) -> Any:
    """Parse JSON bytes as Python's ``json.loads`` would, but fast.

    Integers of any size stay exact, ``NaN``/``Infinity``/``-Infinity`` are
    accepted, objects keep their key order. ``key`` and ``codebase_id`` name
    the object in errors.

    Raises
    ------
    CorruptObjectError
        If ``data`` is empty, not UTF-8 or not JSON.
    """
    raw = _as_bytes(data)
    with _gc_paused(len(raw)):
        return _parse(raw, key, codebase_id)


def _load_model(
    model: type[_M],
    data: bytes | bytearray | memoryview,
    key: str | None,
    codebase_id: str | None,
) -> _M:
    raw = _as_bytes(data)
    with _gc_paused(len(raw)):
        obj = _parse(raw, key, codebase_id)
        if not isinstance(obj, dict):
            raise _corrupt(
                f"expected a JSON object holding a {model.__name__}, got {_json_type(obj)}",
                key,
                codebase_id,
            )
        try:
            # Python-mode validation of the parsed tree measured as fast as
            # model_validate_json and peaks lower: that parses into a Rust tree
            # first, on top of which the models are built.
            if len(raw) > _pieces.PIECE_BYTES:
                try:
                    return _pieces.validate_pieces(model, obj, _pieces.SPLIT_DEPTH)
                except ValidationError:
                    # Validated in one call below, for the one exact error report,
                    # from a fresh parse: the pieces consumed the first.
                    obj = _parse(raw, key, codebase_id)
            return model.model_validate(obj)
        except ValidationError as exc:
            # The models hide input values in errors, so the cause carries no body.
            raise _corrupt(
                f"not a valid {model.__name__}: {_summarize(exc)}", key, codebase_id
            ) from exc


def load_codebase_analysis(
    data: bytes | bytearray | memoryview,
    *,
    key: str | None = None,
    codebase_id: str | None = None,
) -> CodebaseAnalysis:
    """Parse and validate the bytes of an ``analysis.json``.

    Raises
    ------
    CorruptObjectError
        If the bytes are empty, not JSON, or not shaped like a CodebaseAnalysis.
    """
    return _load_model(CodebaseAnalysis, data, key, codebase_id)


def load_file_analysis(
    data: bytes | bytearray | memoryview,
    *,
    key: str | None = None,
    codebase_id: str | None = None,
) -> FileAnalysis:
    """Parse and validate the bytes of a ``file_<h16>.json``.

    Raises
    ------
    CorruptObjectError
        If the bytes are empty, not JSON, or not shaped like a FileAnalysis.
    """
    return _load_model(FileAnalysis, data, key, codebase_id)


def load_file_hashes(
    data: bytes | bytearray | memoryview,
    *,
    key: str | None = None,
    codebase_id: str | None = None,
) -> dict[str, str]:
    """Parse the bytes of a ``file_hashes.json``: an object of file path -> hash string.

    Raises
    ------
    CorruptObjectError
        If the bytes are empty, not JSON, or not an object of strings.
    """
    obj = loads(data, key=key, codebase_id=codebase_id)
    if not isinstance(obj, dict):
        raise _corrupt(
            f"expected a JSON object of file path -> hash, got {_json_type(obj)}",
            key,
            codebase_id,
        )
    bad = [path for path, digest in obj.items() if not isinstance(digest, str)]
    if bad:
        shown = ", ".join(repr(path[-_MAX_LOC_CHARS:]) for path in bad[:_MAX_ERRORS_SHOWN])
        more = f" and {len(bad) - _MAX_ERRORS_SHOWN} more" if len(bad) > _MAX_ERRORS_SHOWN else ""
        raise _corrupt(
            f"file hashes must be strings; {len(bad)} are not: {shown}{more}", key, codebase_id
        )
    return obj
