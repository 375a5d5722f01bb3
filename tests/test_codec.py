"""The codec reproduces upstream's bytes exactly and reports corrupt objects clearly."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import gc
import json
import math
import random
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from documee_remote import codec
from documee_remote.errors import CorruptObjectError
from documee_remote.layout import file_analysis_name, is_file_analysis_name
from documee_remote.models import CodebaseAnalysis, FileAnalysis

UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "documee"
QUIRKS = Path(__file__).resolve().parent / "fixtures" / "quirks"

# Directories whose per-file objects are known not to match analysis.json.
STALE = {"requests-incremental", "incremental-stale"}


def reference(obj: Any) -> bytes:
    """What upstream writes: json.dump(indent=2, ensure_ascii=False) into a UTF-8 file."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")


def _codebase_dirs(root: Path, label: str) -> list[Any]:
    if not root.is_dir():
        return [
            pytest.param(
                None,
                id=f"{label}-missing",
                marks=pytest.mark.skip(reason=f"fixture directory {root} is absent"),
            )
        ]
    return [
        pytest.param(cb, id=f"{label}/{cb.parent.name}/{cb.name}")
        for cb in sorted(root.glob("*/*"))
        if cb.is_dir()
    ]


ALL_DIRS = _codebase_dirs(UPSTREAM, "upstream") + _codebase_dirs(QUIRKS, "quirk")
# Directories with something embedded in analysis.json to compare against.
FILLED_DIRS = [
    p for p in ALL_DIRS if p.values[0] is None or (p.values[0] / "analysis.json").stat().st_size
]


def _key(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


# ----------------------------------------------------------------- fixtures


def test_quirk_fixtures_cover_every_quirk() -> None:
    names = {p.name for p in QUIRKS.iterdir() if p.is_dir()}
    assert {
        "non-ascii",
        "floats",
        "nan-infinity",
        "nested-factors",
        "circular-severity",
        "extra-fields",
        "parse-errors",
        "windows-paths",
        "empty-analysis",
        "incremental-stale",
        "timestamps",
    } <= names


@pytest.mark.parametrize("cb", ALL_DIRS)
def test_every_object_round_trips_byte_for_byte(cb: Path) -> None:
    checked = 0
    for path in sorted(cb.iterdir()):
        raw = path.read_bytes()
        key = _key(path)
        if path.name == "analysis.json":
            if not raw:
                with pytest.raises(CorruptObjectError):
                    codec.load_codebase_analysis(raw, key=key)
                continue
            analysis = codec.load_codebase_analysis(raw, key=key, codebase_id=cb.name)
            assert analysis.codebase_id == cb.name
            assert codec.dump_codebase_analysis(analysis) == raw
        elif path.name == "file_hashes.json":
            hashes = codec.load_file_hashes(raw, key=key)
            assert codec.dump_file_hashes(hashes) == raw
        else:
            assert is_file_analysis_name(path.name), path.name
            fa = codec.load_file_analysis(raw, key=key)
            # The name is the hash of the path inside: upstream's naming rule.
            assert file_analysis_name(fa.file_path) == path.name
            assert codec.dump_file_analysis(fa) == raw
        # The generic layer agrees with the typed one.
        assert codec.dumps(codec.loads(raw, key=key)) == raw
        checked += 1
    assert checked or (cb / "analysis.json").stat().st_size == 0


@pytest.mark.parametrize("cb", FILLED_DIRS)
def test_per_file_objects_match_the_embedded_entries(cb: Path) -> None:
    raw = (cb / "analysis.json").read_bytes()
    analysis = codec.load_codebase_analysis(raw, key=_key(cb / "analysis.json"))
    per_file = {
        p.name: codec.load_file_analysis(p.read_bytes(), key=_key(p))
        for p in cb.glob("file_*.json")
        if p.name != "file_hashes.json"
    }
    embedded_names = {file_analysis_name(path): path for path in analysis.file_analyses}
    for name, path in embedded_names.items():
        if name not in per_file:
            continue
        fa = per_file[name]
        embedded = analysis.file_analyses[path]
        assert fa.file_path == path
        # Bytes compare NaN equal to NaN; model equality does not.
        assert codec.dump_file_analysis(fa) == codec.dump_file_analysis(embedded)
        if b"NaN" not in raw:
            assert fa == embedded
    hashes_path = cb / "file_hashes.json"
    hashes = codec.load_file_hashes(hashes_path.read_bytes()) if hashes_path.exists() else None
    if cb.parent.name in STALE:
        # analysis.json lost the files that were not re-analysed; their older
        # per-file objects and hashes are still there.
        assert set(embedded_names) < set(per_file)
        assert hashes is not None
        assert {file_analysis_name(p) for p in hashes} == set(per_file)
    elif per_file:
        assert set(embedded_names) == set(per_file)
        if hashes is not None:
            assert set(hashes) == set(analysis.file_analyses)


def test_walk_order_is_kept_not_sorted() -> None:
    cb = next(QUIRKS.glob("non-ascii/*"))
    raw = (cb / "analysis.json").read_bytes()
    paths = list(codec.load_codebase_analysis(raw).file_analyses)
    assert paths != sorted(paths)
    assert list(json.loads(raw)["file_analyses"]) == paths


def _empty_analyses() -> list[Any]:
    found = sorted(UPSTREAM.glob("*/*/analysis.json")) if UPSTREAM.is_dir() else []
    params = [pytest.param(p, id=_key(p)) for p in found if p.stat().st_size == 0]
    params += [pytest.param(p, id=_key(p)) for p in sorted(QUIRKS.glob("empty-analysis/*/*"))]
    return params


@pytest.mark.parametrize("path", _empty_analyses())
def test_empty_analysis_json_is_corrupt_not_absent(path: Path) -> None:
    codebase_id = path.parent.name
    key = f"{codebase_id}/analysis.json"
    with pytest.raises(CorruptObjectError) as info:
        codec.load_codebase_analysis(path.read_bytes(), key=key, codebase_id=codebase_id)
    assert info.value.key == key
    assert info.value.codebase_id == codebase_id
    assert key in str(info.value)
    assert codebase_id in str(info.value)
    assert "empty" in str(info.value)


def test_the_three_upstream_empty_samples_are_found() -> None:
    if not UPSTREAM.is_dir():
        pytest.skip(f"fixture directory {UPSTREAM} is absent")
    empties = [p for p in UPSTREAM.glob("*/*/analysis.json") if p.stat().st_size == 0]
    assert len(empties) == 3


# ----------------------------------------------------------------- corrupt input

SAMPLE = next(QUIRKS.glob("floats/*")) / "analysis.json"

GARBAGE = [
    b"",
    b" \n",
    b"\x00",
    b"{",
    b'{"codebase_id": "x"',
    b"\xef\xbb\xbf{}",  # a BOM: upstream's json.load refuses it too
    b'{"a": 1} trailing',
    b"[1,]",
    b'{"a": "\xff"}',
    b"NaN NaN",
    b"\x89PNG\r\n\x1a\n",
    b"[" * 5000 + b"]" * 5000,
]

WRONG_SHAPES = [
    b"[]",
    b'"analysis"',
    b"null",
    b"12",
    b"{}",
    b'{"codebase_id": "x", "file_analyses": [], "dependency_graph": {}, '
    b'"metrics": {}, "analyzed_at": "t"}',
]


def _assert_names_object(exc: CorruptObjectError, key: str, codebase_id: str) -> None:
    assert exc.key == key
    assert exc.codebase_id == codebase_id
    assert key in str(exc)
    assert codebase_id in str(exc)


@pytest.mark.parametrize("data", GARBAGE + WRONG_SHAPES, ids=repr)
@pytest.mark.parametrize(
    "loader", [codec.load_codebase_analysis, codec.load_file_analysis], ids=lambda f: f.__name__
)
def test_garbage_and_wrong_shapes_raise_corrupt(data: bytes, loader: Any) -> None:
    with pytest.raises(CorruptObjectError) as info:
        loader(data, key="cb1/analysis.json", codebase_id="cb1")
    _assert_names_object(info.value, "cb1/analysis.json", "cb1")


@pytest.mark.parametrize("data", GARBAGE, ids=repr)
def test_loads_raises_corrupt_on_garbage(data: bytes) -> None:
    with pytest.raises(CorruptObjectError) as info:
        codec.loads(data, key="cb2/file_0123456789abcdef.json")
    # The codebase is derived from the key when not given.
    _assert_names_object(info.value, "cb2/file_0123456789abcdef.json", "cb2")


@pytest.mark.parametrize("cut", [1, 2, 100, 0.5, -1, -2])
def test_truncated_analysis_is_corrupt(cut: float) -> None:
    raw = SAMPLE.read_bytes()
    end = int(len(raw) * cut) if isinstance(cut, float) else cut
    with pytest.raises(CorruptObjectError) as info:
        codec.load_codebase_analysis(raw[:end], key="cb3/analysis.json", codebase_id="cb3")
    _assert_names_object(info.value, "cb3/analysis.json", "cb3")


def _mutated(path: list[Any], value: Any) -> bytes:
    obj = json.loads(SAMPLE.read_bytes())
    target = obj
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return reference(obj)


FLOATS_PY = "/srv/code/quirk-floats/floats.py"


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (["metrics"], KeyError, "metrics"),
        (["file_analyses", FLOATS_PY, "has_errors"], "true", "has_errors"),
        (["file_analyses", FLOATS_PY, "documentation_coverage"], True, "documentation_coverage"),
        (
            ["file_analyses", FLOATS_PY, "symbol_info", "functions", 0, "start_line"],
            "1",
            "start_line",
        ),
        (
            ["file_analyses", FLOATS_PY, "symbol_info", "functions", 0, "start_line"],
            1.0,
            "start_line",
        ),
        (["file_analyses", FLOATS_PY, "symbol_info", "functions", 0, "is_async"], 0, "is_async"),
        (["top_teaching_files", 0], ["a", 1.0, 2], "top_teaching_files"),
        (["dependency_graph", "nodes"], [], "nodes"),
    ],
)
def test_wrong_shape_names_the_location_not_the_body(
    path: list[Any], value: Any, where: str
) -> None:
    data = _mutated(path, value)
    with pytest.raises(CorruptObjectError) as info:
        codec.load_codebase_analysis(data, key="cb4/analysis.json", codebase_id="cb4")
    message = str(info.value)
    _assert_names_object(info.value, "cb4/analysis.json", "cb4")
    assert "CodebaseAnalysis" in message
    assert where in message
    assert "Moderate teaching value" not in message  # body text never leaks


def test_error_summary_stays_short_with_many_errors() -> None:
    obj = json.loads(SAMPLE.read_bytes())
    secret = "s3cr3t-" * 50
    for fa in obj["file_analyses"].values():
        fa["language"] = [secret]
        fa["has_errors"] = secret
        fa["analyzed_at"] = 5
    with pytest.raises(CorruptObjectError) as info:
        codec.load_codebase_analysis(reference(obj), key="cb5/analysis.json")
    message = str(info.value)
    assert "6 errors" in message
    assert "and 3 more" in message
    assert "s3cr3t" not in message
    assert len(message) < 1000


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"[]", "an array"),
        (b'{"a": 1}', "'a'"),
        (b'{"a": "x", "b": null, "c": 3, "d": [], "e": {}}', "4 are not"),
    ],
)
def test_file_hashes_must_be_an_object_of_strings(data: bytes, fragment: str) -> None:
    with pytest.raises(CorruptObjectError) as info:
        codec.load_file_hashes(data, key="cb6/file_hashes.json")
    _assert_names_object(info.value, "cb6/file_hashes.json", "cb6")
    assert fragment in str(info.value)


def test_loads_takes_bytes_like_only() -> None:
    assert codec.loads(bytearray(b"[1]")) == [1]
    assert codec.loads(memoryview(b'{"a": 2}')) == {"a": 2}
    with pytest.raises(TypeError):
        codec.loads("[1]")  # type: ignore[arg-type]


@given(st.binary(max_size=200))
def test_random_bytes_never_pass_as_an_analysis(data: bytes) -> None:
    with pytest.raises(CorruptObjectError) as info:
        codec.load_codebase_analysis(data, key="cb7/analysis.json")
    assert info.value.codebase_id == "cb7"


@given(st.binary(max_size=60) | st.text(max_size=60).map(lambda s: s.encode("utf-8", "replace")))
def test_loads_accepts_exactly_what_upstream_json_load_accepts(data: bytes) -> None:
    try:
        expected = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        with pytest.raises(CorruptObjectError):
            codec.loads(data, key="k/x.json")
    else:
        assert reference_safe(codec.loads(data)) == reference_safe(expected)


# ----------------------------------------------------------------- loads: Python's corners


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "[NaN, Infinity, -Infinity]",
        '{"x": 123456789012345678901234567890, "y": -9223372036854775809}',
        "18446744073709551616",
        "[1e400, -1e400]",
        '["\\ud800", "\\udfff x"]',
        '{"a": 1, "b": 2, "a": 3}',
        "[" * 300 + "]" * 300,  # pydantic-core stops at 200 levels
        '"\\u2028\\u0000/"',
        " \t\n[1]\r\n",
    ],
)
def test_loads_matches_stdlib_where_parsers_differ(text: str) -> None:
    expected = json.loads(text)
    got = codec.loads(text.encode("utf-8"))
    assert reference_safe(got) == reference_safe(expected)
    assert _types(got) == _types(expected)


def reference_safe(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=True).encode()


def _types(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _types(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_types(v) for v in obj]
    return type(obj).__name__


def test_loads_rounds_long_decimals_like_python() -> None:
    # Written by other tools, numbers can carry more digits than a double
    # holds; they must round to the same double as Python's float().
    rnd = random.Random(7)
    tokens = []
    for _ in range(20_000):
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 40)))
        token = f"{rnd.choice(['', '-'])}{rnd.randint(0, 9)}.{digits}e{rnd.randint(-330, 310)}"
        tokens.append(token)
    tokens += ["2.2250738585072011e-308", "2.4703282292062328e-324", "9007199254740993.0"]
    tokens += ["1.00000000000000011102230246251565404236316680908203125"]
    parsed = codec.loads(("[" + ",".join(tokens) + "]").encode())
    expected = [float(t) for t in tokens]
    assert [struct.pack("<d", x) for x in parsed] == [struct.pack("<d", x) for x in expected]


def test_big_integers_are_not_rounded() -> None:
    # orjson would parse this as a float; upstream's json keeps it exact.
    assert codec.loads(b"[123456789012345678901234567891]") == [123456789012345678901234567891]


# ----------------------------------------------------------------- dumps: exactness

SPECIAL_TEXT = [
    '": ',
    '\\"',
    "\n",
    'a": 1e-05',
    "1e-07",
    "x 0.00001",
    "\u2028\u2029",
    "\x7f",
    "\x00\x1f",
    "é😀",
    "/",
    "\\",
    "",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e-05, 1e-07, 1e16, 1e22, 0.0001, 9.999999999999999e-05, -0.0, 5e-324])
    | st.text(st.characters(exclude_categories=()))
    | st.text(st.characters(categories=["Cs", "Cc", "Zl", "Zp"]), max_size=3)
    | st.sampled_from(SPECIAL_TEXT)
)
json_keys = st.text(st.characters(exclude_categories=["Cs"]), max_size=8) | st.sampled_from(
    SPECIAL_TEXT
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(json_keys, children, max_size=5)
    ),
    max_leaves=30,
)


def _same_as_reference(obj: Any) -> None:
    try:
        expected = reference(obj)
    except Exception as exc:  # the reference raising is part of its behaviour
        with pytest.raises(type(exc)):
            codec.dumps(obj)
        return
    assert codec.dumps(obj) == expected


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_dumps_is_byte_identical_to_json_dumps(obj: Any) -> None:
    _same_as_reference(obj)


@settings(max_examples=300)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40))
def test_dumps_spells_every_float_like_repr(values: list[float]) -> None:
    _same_as_reference(values)
    _same_as_reference({"k": values, '": 1e-07': values[0]})


def test_dumps_spells_random_doubles_like_repr() -> None:
    # Every bit pattern class, in one call: cheap, and catches a change of
    # float spelling in a new orjson release.
    rnd = random.Random(20261124)
    values: list[float] = []
    while len(values) < 100_000:
        x = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            values.append(x)
        values.append(rnd.uniform(-1, 1) * 10.0 ** rnd.randint(-25, 25))
    assert codec.dumps(values) == reference(values)


@settings(max_examples=300)
@given(json_values)
def test_loads_dumps_round_trip(obj: Any) -> None:
    try:
        data = reference(obj)
    except UnicodeEncodeError:
        return  # upstream cannot write lone surrogates either
    back = codec.loads(data)
    assert codec.dumps(back) == data


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


class Num(float):
    pass


Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "obj",
    [
        {1: "a", False: "b", None: "c", 1.5: "d", 1e-05: "e", float("nan"): "f"},
        {Text("k"): Text("v")},
        [Level.HIGH, Num(1e-05), Point(1, 2.5)],
        [float("nan"), float("inf"), -float("inf"), None],
        {"x": {"y": [float("nan")]}},
        [2**64, -(2**63) - 1, 10**40],
        ["\ud800"],
        {"\udfff": 1},
        [[[[[]]]]] * 3,
    ],
    ids=lambda o: type(o).__name__,
)
def test_dumps_falls_back_exactly(obj: Any) -> None:
    _same_as_reference(obj)


def test_dumps_handles_nesting_beyond_orjsons_limit() -> None:
    deep: Any = 1e-07
    for _ in range(400):
        deep = [deep]
    assert codec.dumps(deep) == reference(deep)


@pytest.mark.parametrize(
    "obj",
    [Color.RED, uuid.UUID(int=1), dt.datetime(2026, 1, 1), {"a": object()}, b"bytes", {1, 2}],
    ids=lambda o: type(o).__name__,
)
def test_dumps_refuses_what_json_refuses(obj: Any) -> None:
    with pytest.raises(TypeError):
        reference(obj)
    with pytest.raises(TypeError):
        codec.dumps(obj)


def test_dumps_refuses_cycles_like_json() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="Circular"):
        codec.dumps(cyclic)


@pytest.mark.parametrize(
    "obj",
    [
        1e-07,
        0.00001,
        -0.00001234,
        {'a": 1e-07': 1e-07, "b": "ends 1e-07", "c\n1e-07": ["1e-07", 1e-07]},
        {"k": '1e-07", "x": 1e-07'},
        {"0.00001": 0.00001, "x": "y 0.00001"},
    ],
)
def test_float_respelling_never_touches_strings(obj: Any) -> None:
    assert codec.dumps(obj) == reference(obj)


# ----------------------------------------------------------------- dumps_model


def test_dumps_model_handles_non_analysis_models() -> None:
    from pydantic import BaseModel

    class Other(BaseModel):
        x: float
        y: list[int]

    m = Other(x=float("nan"), y=[2**70])
    assert codec.dumps_model(m) == reference({"x": float("nan"), "y": [2**70]})


def test_dumps_model_falls_back_for_surrogates() -> None:
    raw = (next(QUIRKS.glob("timestamps/*")) / "analysis.json").read_bytes()
    analysis = codec.load_codebase_analysis(raw)
    analysis.analyzed_at = "\ud800"
    with pytest.raises(UnicodeEncodeError):
        reference(analysis.to_dict())
    with pytest.raises(UnicodeEncodeError):
        codec.dump_codebase_analysis(analysis)


def test_typed_dumpers_check_their_argument() -> None:
    with pytest.raises(TypeError):
        codec.dump_codebase_analysis({})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec.dump_file_analysis({})  # type: ignore[arg-type]


def test_dump_file_hashes_keeps_order_and_accepts_mappings() -> None:
    hashes = collections.OrderedDict([("z.py", "1" * 64), ("a.py", "2" * 64)])
    assert codec.dump_file_hashes(hashes) == reference(dict(hashes))
    assert codec.dump_file_hashes({}) == b"{}"


# ----------------------------------------------------------------- GC pause


def _big_analysis_bytes() -> bytes:
    raw = (next(QUIRKS.glob("non-ascii/*")) / "analysis.json").read_bytes()
    obj = json.loads(raw)
    template = next(iter(obj["file_analyses"].values()))
    files = {}
    for i in range(400):
        path = f"/srv/big/{i}.py"
        files[path] = {**template, "file_path": path}
    obj["file_analyses"] = files
    data = reference(obj)
    assert len(data) > 1 << 20  # large enough to pause the collector
    return data


def test_gc_state_is_restored_after_a_large_load() -> None:
    data = _big_analysis_bytes()
    assert gc.isenabled()
    analysis = codec.load_codebase_analysis(data)
    assert len(analysis.file_analyses) == 400
    assert gc.isenabled()
    gc.disable()
    try:
        codec.load_codebase_analysis(data)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_is_restored_when_a_large_load_fails() -> None:
    data = _big_analysis_bytes()
    with pytest.raises(CorruptObjectError):
        codec.load_file_analysis(data[:-1] + b"]")
    with pytest.raises(CorruptObjectError):
        codec.load_file_analysis(data)  # valid JSON, wrong shape
    assert gc.isenabled()
    assert isinstance(codec.load_codebase_analysis(data), CodebaseAnalysis)
    assert isinstance(
        codec.load_file_analysis(reference(next(iter(json.loads(data)["file_analyses"].values())))),
        FileAnalysis,
    )
