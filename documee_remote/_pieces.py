"""Reading and writing large analyses in pieces, so no single call holds the GIL for long.

One pydantic-core call over a 52 MB ``analysis.json`` (parsing, validating or
serializing) holds the GIL for 100-250 ms, stalling every other thread: an
asyncio service's event loop included, even with the load in a worker thread.
:mod:`documee_remote.codec` uses these functions for large objects; each
gives exactly the result of the one call (see each docstring for why), and
raises for the codec to take the one-call path whenever it cannot be sure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson
import pydantic_core
from pydantic import BaseModel

from .models import AnalysisModel

_M = TypeVar("_M", bound=BaseModel)


def dump_pieces(
    model: BaseModel,
    pad: bytes,
    out: list[bytes],
    depth: int,
    model_json: Callable[[BaseModel], bytes],
) -> None:
    """Append the indented JSON of ``model`` (nested at indent ``pad``) to ``out`` in pieces.

    Serializing a 52 MB analysis in one pydantic-core call holds the GIL for
    ~150 ms, which stalls every other thread (an event loop serving requests
    while a worker saves). So fields holding models (the dependency graph) or
    collections of them (file analyses, graph nodes and edges) are written
    entry by entry and stitched into the rest, each piece re-indented to its
    depth: the bytes are exactly those of one call (indented JSON is the same
    text whoever writes it; strings hold no raw newline, so indenting every
    line of a piece is safe), and the GIL is free between pieces.
    """
    split = _splittable(model) if depth > 0 else []
    if not split:
        text = model_json(model)
        out.append(text.replace(b"\n", b"\n" + pad) if pad else text)
        return
    # The rest of the model, with an empty placeholder where each split field goes.
    skeleton = model_json(model.model_copy(update=dict.fromkeys(split, None)))
    pos = 0
    for name in split:
        marker = b"\n  " + orjson.dumps(name) + b": null"
        at = skeleton.find(marker, pos)
        if at == -1:  # a model that writes itself otherwise: no shortcut
            raise NoSplitError
        at += len(marker) - 4
        out.append(skeleton[pos:at].replace(b"\n", b"\n" + pad))
        inner = pad + b"  "
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            dump_pieces(value, inner, out, depth - 1, model_json)
        else:
            items = value.items() if isinstance(value, dict) else enumerate(value)
            keyed = isinstance(value, dict)
            out.append(b"{" if keyed else b"[")
            first = True
            for key, item in items:
                head = b"\n" if first else b",\n"
                out.append(head + inner + b"  " + (orjson.dumps(key) + b": " if keyed else b""))
                dump_pieces(item, inner + b"  ", out, 0, model_json)
                first = False
            out.append(b"\n" + inner + (b"}" if keyed else b"]"))
        pos = at + 4
    tail = skeleton[pos:]
    out.append(tail.replace(b"\n", b"\n" + pad) if pad else tail)


class NoSplitError(Exception):
    """The piecewise path does not apply; take the one-call path."""


#: How many levels of nesting a large document is read in pieces through.
PARSE_DEPTH = 4

#: How many levels of model fields are written and read in pieces: the analysis
#: (its file analyses) and its dependency graph (nodes and edges).
SPLIT_DEPTH = 2


def _splittable(model: BaseModel) -> list[str]:
    """Names of ``model``'s fields holding a model or a non-empty dict/list of models."""
    names = []
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, AnalysisModel):
            names.append(name)
        elif isinstance(value, dict | list) and value:
            items = value.values() if isinstance(value, dict) else value
            if all(isinstance(item, AnalysisModel) for item in items) and (
                not isinstance(value, dict) or all(type(k) is str for k in value)
            ):
                names.append(name)
    return names


#: Pieces of about this size are parsed in one call when a document is read in
#: pieces: ~1 ms of GIL each.
PIECE_BYTES = 1 << 18
# A JSON string (no raw control characters inside), then the ": " of a member.
_KEY = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\.)*": ')


def parse_pieces(data: bytes | bytearray, start: int, end: int, indent: int, depth: int) -> Any:
    """Parse the JSON value ``data[start:end]`` in pieces of about ``PIECE_BYTES``.

    One ``from_json`` call over 52 MB holds the GIL for ~250 ms; here the
    value, if it is a large object or array laid out as indented JSON is (as
    upstream and this module write it: members on their own lines, indented
    by two spaces a level), is cut at its members' line breaks, and runs of
    members are parsed one call each (large members recursively). The result
    is exactly that of one call: no string holds a raw newline, so every cut
    falls between tokens, and each piece is checked by parsing it as a whole
    value; text that does not fit the layout raises ``ValueError``, and the
    caller parses the document in one call instead.
    """
    if end - start <= PIECE_BYTES or depth == 0:
        return pydantic_core.from_json(data[start:end])
    opener = data[start : start + 1]
    if opener not in (b"{", b"["):
        return pydantic_core.from_json(data[start:end])
    keyed = opener == b"{"
    pad = b"\n" + b" " * (indent + 2)
    close = b"\n" + b" " * indent + (b"}" if keyed else b"]")
    if data[start + 1 : start + 1 + len(pad)] != pad or data[end - len(close) : end] != close:
        raise ValueError("not laid out as indented JSON")
    # Members: from after "{\n<pad>" to before "\n<indent>}", separated by ",\n<pad>".
    sep = b"," + pad
    bounds: list[tuple[int, int]] = []
    pos = start + 1 + len(pad)
    last = end - len(close)
    while True:
        at = data.find(sep, pos, last)
        # A separator is followed by a member, never by more indentation.
        while at != -1 and data[at + len(sep) : at + len(sep) + 1] == b" ":
            at = data.find(sep, at + 1, last)
        if at == -1:
            bounds.append((pos, last))
            break
        bounds.append((pos, at))
        pos = at + len(sep)
    result: Any = {} if keyed else []
    run_start = -1
    run_end = -1

    def flush() -> None:
        if run_start == -1:
            return
        text = data[run_start:run_end]
        part = pydantic_core.from_json(b"{" + text + b"}" if keyed else b"[" + text + b"]")
        if keyed:
            result.update(part)
        else:
            result.extend(part)

    for begin, stop in bounds:
        if stop - begin > PIECE_BYTES:
            flush()
            run_start = -1
            if keyed:
                found = _KEY.match(data, begin, stop)
                if found is None:
                    raise ValueError("no member key")
                name = pydantic_core.from_json(data[begin : found.end() - 2])
                if type(name) is not str:
                    raise ValueError("member key is not a string")
                value = parse_pieces(data, found.end(), stop, indent + 2, depth - 1)
                # A repeated key: the last value wins, in the first one's place,
                # as in one from_json call (and json.loads).
                result[name] = value
            else:
                result.append(parse_pieces(data, begin, stop, indent + 2, depth - 1))
            continue
        if run_start == -1:
            run_start = begin
        run_end = stop
        if run_end - run_start >= PIECE_BYTES:
            flush()
            run_start = -1
    flush()
    return result


def validate_pieces(
    model: type[_M], obj: Mapping[str, Any], depth: int, *, consume: bool = True
) -> _M:
    """``model.model_validate(obj)``, validating its big fields entry by entry.

    One call over a 52 MB analysis holds the GIL for ~200 ms. Here fields
    typed as a model or a dict/list of models (file analyses, the dependency
    graph, its nodes and edges) are validated a model at a time first, and
    the whole then validated with those instances in place, which pydantic
    takes as they are: the same checks, the same result, the GIL free between
    entries. Any failure raises ``ValidationError``, and the caller validates
    in one call for the exact error report. With ``consume`` (for a tree the
    caller parsed and owns), each entry is dropped from ``obj`` once
    validated, so the parsed tree is freed in pieces too (freeing 22 MB of it
    at once holds the GIL for ~100 ms); without, ``obj`` is left untouched.
    """
    if depth > 0:
        built: dict[str, Any] | None = None
        for name, (kind, sub) in _model_fields(model).items():
            value = obj.get(name)
            if kind == "model" and type(value) is dict:
                done: Any = validate_pieces(sub, value, depth - 1, consume=consume)
            elif kind == "dict" and type(value) is dict:
                done = {}
                for k in value:
                    done[k] = _validated(sub, value[k])
                    if consume:
                        value[k] = None  # free the parsed entry now, not all at once below
            elif kind == "list" and type(value) is list:
                done = []
                for i, item in enumerate(value):
                    done.append(_validated(sub, item))
                    if consume:
                        value[i] = None
            else:
                continue
            if built is None:
                built = dict(obj)
            built[name] = done
        if built is not None:
            obj = built
    return model.model_validate(obj)


def _validated(model: type[_M], obj: Any) -> _M:
    return model.model_validate(obj)


_FIELD_KINDS: dict[type[BaseModel], dict[str, tuple[str, Any]]] = {}


def _model_fields(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """``model``'s fields typed ``M``, ``dict[str, M]`` or ``list[M]`` for an analysis model M."""
    found = _FIELD_KINDS.get(model)
    if found is None:
        found = {}
        for name, info in model.model_fields.items():
            tp = info.annotation
            origin = getattr(tp, "__origin__", None)
            args: tuple[Any, ...] = getattr(tp, "__args__", ())
            if isinstance(tp, type) and issubclass(tp, AnalysisModel):
                found[name] = ("model", tp)
            elif origin is dict and len(args) == 2 and args[0] is str and _is_model(args[1]):
                found[name] = ("dict", args[1])
            elif origin is list and len(args) == 1 and _is_model(args[0]):
                found[name] = ("list", args[0])
        _FIELD_KINDS[model] = found
    return found


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, AnalysisModel)
