"""Hostile input, fuzzed with Hypothesis: ids, file paths, keys and object bodies.

Every case must end in a typed error of the library or be handled; never a
dependency's exception, never a write outside the store's root, never a
partial object. Each test counts its cases into the fault ledger (printed at
the end of the run, with ``--hypothesis-show-statistics`` for Hypothesis's own).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from documee_remote import PersistenceManager
from documee_remote.codec import dump_codebase_analysis, loads
from documee_remote.errors import CorruptObjectError, DocumeeRemoteError, InvalidKeyError
from documee_remote.layout import file_analysis_key
from documee_remote.merge import new_analysis, refresh_derived
from documee_remote.stores import LocalStore, MemoryStore, Store

from ._helpers import versioned
from ._strategies import keys
from .conftest import FaultLedger

CASES: Counter[str] = Counter()
#: Examples per fuzz test; raise it for a long hunt (DOCUMEE_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("DOCUMEE_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def _count_cases(fault_ledger: FaultLedger) -> Iterator[None]:
    yield
    for name, count in sorted(CASES.items()):
        fault_ledger.figure(f"fuzz cases: {name}", count)


class Sandbox:
    """A LocalStore root beside a canary directory, fresh for every example."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="documee-fuzz-")
        self.base = Path(self._dir.name)
        self.root = self.base / "root"
        self.canary = self.base / "team-b" / "secret.json"
        self.canary.parent.mkdir()
        self.canary.write_bytes(b'{"canary": true}')

    def stores(self) -> list[Store]:
        return [LocalStore(self.root, fsync=False), MemoryStore()]

    def files_outside_root(self) -> list[str]:
        outside = []
        for directory, _dirs, files in os.walk(self.base):
            for name in files:
                path = os.path.join(directory, name)
                if not path.startswith(str(self.root) + os.sep) and path != str(self.canary):
                    outside.append(path)
        return outside

    def check(self) -> None:
        assert self.files_outside_root() == []
        assert self.canary.read_bytes() == b'{"canary": true}'

    def close(self) -> None:
        self._dir.cleanup()


def typed(call: Callable[[], Any]) -> DocumeeRemoteError | None:
    """Run ``call``; return the library error it raised, or None. Anything else fails."""
    try:
        call()
    except DocumeeRemoteError as exc:
        return exc
    return None


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in text)


# -- codebase ids -----------------------------------------------------------------------------

HOSTILE_IDS = [
    "",
    ".",
    "..",
    "...",
    "../x",
    "a/b",
    "a\\b",
    "C:",
    "C:\\x",
    "c:x",
    "/etc",
    "a\x00b",
    "con",
    "CON.json",
    "nul",
    "LPT1",
    "a" * 129,
    "a" * 128,
    "é",
    "a..b",
    "-a",
    "_a",
    "a b",
    "a\nb",
    "\u202eabc",
    "\uff41\uff42",
    "a/../b",
    "%2e%2e",
    "..\\..\\x",
    "\\\\server\\share",
    "a:b",
    "team-b",
    "f894e86523a62387",
    "a\ud800",
    "x" * 5000,
]
codebase_ids = st.one_of(
    st.sampled_from(HOSTILE_IDS),
    st.text(max_size=140),
    st.text(alphabet="./\\:\x00aZ9_-é ", max_size=12),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,140}", fullmatch=True),
)


@FUZZ
@given(codebase_id=codebase_ids)
def test_codebase_ids(codebase_id: str) -> None:
    CASES["codebase ids"] += 1
    box = Sandbox()
    try:
        for store in box.stores():
            pm = PersistenceManager(store)
            fa = versioned("/a.py", 1)
            error = typed(
                lambda: pm.merge_file_analyses(codebase_id, {"/a.py": fa}, {"/a.py": "h"})
            )
            if error is not None:
                assert isinstance(error, InvalidKeyError), repr(error)
                CASES["codebase ids refused"] += isinstance(store, MemoryStore)
                for op in (
                    lambda: pm.load_analysis(codebase_id),
                    lambda: pm.get_file_hashes(codebase_id),
                    lambda: pm.load_file_analysis(codebase_id, "/a.py"),
                    lambda: pm.verify(codebase_id, repair=True),
                    lambda: pm.gc(codebase_id),
                    lambda: pm.delete_analysis(codebase_id),
                    lambda: pm.lease(codebase_id, ttl=1).acquire(),
                    lambda: pm.save_analysis(codebase_id, new_analysis("x")),
                ):
                    assert isinstance(typed(op), InvalidKeyError)
                assert list(store.list()) == []
                continue
            # Accepted: a single, plain directory name.
            assert 1 <= len(codebase_id) <= 128
            assert not codebase_id.startswith(".")
            assert "/" not in codebase_id
            assert "\\" not in codebase_id
            assert ":" not in codebase_id
            assert not _has_control(codebase_id)
            assert {k.split("/", 1)[0] for k in store.list()} == {codebase_id}
            assert pm.list_codebases() == [codebase_id]
            loaded = pm.load_analysis(codebase_id)
            assert loaded is not None
            assert loaded.codebase_id == codebase_id
            assert pm.verify(codebase_id).findings == []
            assert pm.delete_analysis(codebase_id) is True
            assert list(store.list()) == []
        box.check()
    finally:
        box.close()


# -- file paths ----------------------------------------------------------------------------------

HOSTILE_PATHS = [
    "",
    "\x00",
    "a\x00b",
    "../../etc/passwd",
    "/etc/passwd",
    "C:\\Users\\x.py",
    "C:/x.py",
    "\\\\?\\C:\\x.py",
    "\\\\server\\share\\x.py",
    "/" * 5000,
    "a" * 4096,
    "a" * 4097,
    "é" * 2049,
    "analysis.json",
    "../analysis.json",
    "file_0123456789abcdef.json",
    "src/../../../x.py",
    "\ud800",
    "x\udfff.py",
    "\u202e.py",
    "a\nb.py",
    "👩‍💻.py",
    " ",
]
file_paths = st.one_of(
    st.sampled_from(HOSTILE_PATHS),
    st.text(max_size=60),
    st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=4),
    st.lists(
        st.sampled_from(["..", ".", "", "a", "C:", "\\", "é", "\x00", "b.py"]), max_size=8
    ).map("/".join),
)
_PER_CODEBASE_NAME = re.compile(
    r"((analysis|file_hashes|file_[0-9a-f]{16})\.json"
    r"|_journal/([0-9]{20}\.(json|folded)|w[0-9]{13}-[0-9a-f]{16}\.json|c[0-9]{20}\.folded"
    r"|_folder\.json))\Z"
)


@FUZZ
@given(path=file_paths)
def test_file_paths(path: str) -> None:
    CASES["file paths"] += 1
    box = Sandbox()
    try:
        for store in box.stores():
            pm = PersistenceManager(store)
            fa = versioned("/placeholder.py", 1).model_copy(update={"file_path": path})
            error = typed(lambda: pm.merge_file_analyses("cb", {path: fa}, {path: "h"}))
            if error is not None:
                assert isinstance(error, InvalidKeyError), repr(error)
                assert list(store.list()) == []  # refused before anything was written
                CASES["file paths refused"] += isinstance(store, MemoryStore)
                continue
            assert "\x00" not in path
            path.encode("utf-8")  # JSON-storable text
            assert all(
                k.startswith("cb/") and _PER_CODEBASE_NAME.match(k[3:]) for k in store.list()
            )
            loaded = pm.load_analysis("cb")
            assert loaded is not None
            assert list(loaded.file_analyses) == [path]
            assert loaded.file_analyses[path].file_path == path
            assert pm.load_file_analysis("cb", path) == fa
            assert pm.get_file_hashes("cb") == {path: "h"}
            pm.merge_file_analyses("cb", {}, {}, removed=[path])
            assert not store.exists(file_analysis_key("cb", path))
            assert pm.get_file_hashes("cb") == {}
        box.check()
    finally:
        box.close()


@pytest.mark.parametrize("value", [123, None, ["h"], {"h": 1}])
def test_non_string_hashes_are_refused_before_anything_is_written(value: object) -> None:
    pm = PersistenceManager(MemoryStore())
    pm.merge_file_analyses("cb", {"/a.py": versioned("/a.py", 1)}, {"/a.py": "h"})
    with pytest.raises(InvalidKeyError):
        pm.merge_file_analyses("cb", {"/b.py": versioned("/b.py", 1)}, {"/b.py": value})  # type: ignore[dict-item]
    with pytest.raises(InvalidKeyError):
        pm.save_file_hashes("cb", {"/a.py": value})  # type: ignore[dict-item]
    assert pm.get_file_hashes("cb") == {"/a.py": "h"}  # still readable
    pm.merge_file_analyses("cb", {"/c.py": versioned("/c.py", 1)}, {"/c.py": "h"})


# -- store keys ------------------------------------------------------------------------------------


def accepted_key_is_safe(key: str) -> None:
    segments = key.split("/")
    assert not key.startswith("/")
    assert not key.endswith("/")
    assert all(s not in ("", ".", "..") and not s.startswith(".") for s in segments)
    assert "\\" not in key
    assert not _has_control(key)
    assert not any(len(s) >= 2 and s[1] == ":" and s[0].isalpha() for s in segments)
    assert len(key.encode("utf-8")) <= 900


def exercise_key(store: Store, key: str) -> bool:
    """Put, read, list and delete ``key``; True when the store accepted it."""
    error = typed(lambda: store.put(key, b"payload"))
    if error is not None:
        assert isinstance(error, InvalidKeyError), repr(error)
        for op in (
            lambda: store.get(key),
            lambda: store.head(key),
            lambda: store.delete(key),
            lambda: store.put(key, b"x", if_none_match="*"),
            lambda: store.get_many([key]),
        ):
            assert isinstance(typed(op), InvalidKeyError)
        assert list(store.list()) == []
        return False
    accepted_key_is_safe(key)
    assert store.get(key).data == b"payload"
    assert list(store.list()) == [key]
    assert key in list(store.list(key))
    store.delete(key)
    assert list(store.list()) == []
    return True


@FUZZ
@given(key=keys)
def test_store_keys(key: str) -> None:
    CASES["store keys"] += 1
    box = Sandbox()
    try:
        for store in box.stores():
            if exercise_key(store, key) and isinstance(store, LocalStore):
                CASES["store keys accepted"] += 1
            box.check()
    finally:
        box.close()


# -- object bodies ------------------------------------------------------------------------------


def _valid_analysis() -> bytes:
    analysis = new_analysis("cb")
    for i in range(3):
        analysis.file_analyses[f"/f{i}.py"] = versioned(f"/f{i}.py", i)
    refresh_derived(analysis)
    return dump_codebase_analysis(analysis)


VALID = _valid_analysis()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _mutate(data: dict[str, Any], path: list[str], value: Any) -> bytes:
    node: Any = data
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            break
    else:
        node[path[-1]] = value
    return json.dumps(data, allow_nan=True).encode()


MUTATION_PATHS = [
    ["codebase_id"],
    ["file_analyses"],
    ["file_analyses", "/f0.py"],
    ["file_analyses", "/f0.py", "symbol_info"],
    ["metrics"],
    ["metrics", "total_files"],
    ["top_teaching_files"],
    ["dependency_graph"],
    ["analyzed_at"],
    # ["documee_remote"] (the fencing bookkeeping): see test_odd_bookkeeping_* below
]
bodies = st.one_of(
    st.binary(max_size=300),
    st.integers(0, len(VALID) - 1).map(lambda n: VALID[:n]),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.tuples(st.sampled_from(MUTATION_PATHS), json_values).map(
        lambda pv: _mutate(json.loads(VALID), pv[0], pv[1])
    ),
    st.integers(1, 12_000).map(lambda n: b"9" * n),
    st.sampled_from([b"1e999999", b"-1e400", b"NaN", b"Infinity", b"\xef\xbb\xbf{}", b"\xff\xfe{"]),
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(1, 50_000).map(lambda n: b"[" * n),
    st.sampled_from(
        [
            json.dumps({"size": 10**12, "file_analyses": {}, "metrics": {"total_files": 2**63}}),
            json.dumps({"file_analyses": {"/a.py": {"file_path": "/a.py", "size": 5 << 30}}}),
            '{"owner": 1, "token": "x", "ttl": "y", "acquired_at": 1, "expires_at": 2, '
            '"released": 3}',
            '{"owner": "o", "token": 99999999999999999999999999, "ttl": 1e308, '
            '"acquired_at": "", "expires_at": "9999-12-31T23:59:59+00:00", "released": false}',
            '{"/a.py": 1}',
        ]
    ).map(str.encode),
)
TARGETS = ["cb/analysis.json", "cb/file_hashes.json", file_analysis_key("cb", "/f0.py")]


def run_readers_and_writers(store: MemoryStore, target: str) -> Counter[str]:
    """Every operation that reads ``target``; each must succeed or raise a library error."""
    pm = PersistenceManager(store)
    outcomes: Counter[str] = Counter()
    for name, op in (
        ("load", lambda: pm.load_analysis("cb")),
        ("hashes", lambda: pm.get_file_hashes("cb")),
        ("file", lambda: pm.load_file_analysis("cb", "/f0.py")),
        ("files", lambda: pm.load_file_analyses("cb", ["/f0.py", "/f1.py"])),
        ("list", pm.list_codebases),
        ("verify", lambda: pm.verify("cb")),
        ("gc", lambda: pm.gc("cb", grace_seconds=0)),
        ("lease", lambda: pm.lease("cb", ttl=5, wait=0, auto_renew=False).acquire().release()),
        ("merge", lambda: pm.merge_file_analyses("cb", {"/n.py": versioned("/n.py", 1)}, {})),
        ("repair", lambda: pm.verify("cb", repair=True, grace_seconds=0)),
    ):
        before = store.get(target).data if store.exists(target) else None
        error = typed(op)
        outcomes[f"{name}:{type(error).__name__ if error else 'ok'}"] += 1
        if isinstance(error, CorruptObjectError):
            assert error.codebase_id == "cb"
            if target in ("cb/analysis.json", "cb/_lease.json") and name != "repair":
                # A corrupt commit point or lease is left for a human: never overwritten.
                assert store.get(target).data == before
    return outcomes


@FUZZ
@given(body=bodies, target=st.sampled_from(TARGETS))
def test_hostile_bodies(body: bytes, target: str) -> None:
    CASES["object bodies"] += 1
    store = MemoryStore()
    store.put("cb/analysis.json", VALID)
    store.put(target, body)
    run_readers_and_writers(store, target)


@pytest.mark.parametrize("key", ["cb/\uffff", "cb/a\ufffe.json"])
def test_keys_s3_xml_cannot_carry_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        MemoryStore().put(key, b"{}")


@FUZZ
@given(body=bodies)
def test_hostile_lease_bodies(body: bytes) -> None:
    store = MemoryStore()
    store.put("cb/analysis.json", VALID)
    store.put("cb/_lease.json", body)
    run_readers_and_writers(store, "cb/_lease.json")


@pytest.mark.parametrize("value", ["ab", [1], True, 5])
def test_odd_bookkeeping_in_analysis_json_does_not_crash_a_lease(value: object) -> None:
    store = MemoryStore()
    analysis = json.loads(VALID)
    analysis["documee_remote"] = value
    store.put("cb/analysis.json", json.dumps(analysis).encode())
    pm = PersistenceManager(store)
    assert pm.load_analysis("cb") is not None  # a valid analysis: unknown fields are kept
    error = typed(lambda: pm.lease("cb", ttl=5, wait=0, auto_renew=False).acquire().release())
    assert error is None or isinstance(error, CorruptObjectError)


LEASE = {"owner": "o", "token": 1, "ttl": 5.0, "acquired_at": "", "released": False}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        json.dumps({**LEASE, "expires_at": "9999-12-31T23:59:59+00:00"}).encode(),
        json.dumps({**LEASE, "expires_at": "2020-01-01T00:00:00"}).encode(),  # naive
    ],
    ids=["deep-nesting", "datetime-max", "naive-datetime"],
)
def test_malformed_lease_objects_are_corrupt_not_a_crash(body: bytes) -> None:
    pm = PersistenceManager(MemoryStore())
    pm.store.put("cb/_lease.json", body)
    with pytest.raises(CorruptObjectError):
        pm.lease("cb", ttl=5, wait=0, auto_renew=False).acquire()


@settings(max_examples=EXAMPLES * 4, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_codec_loads_never_leaks_a_foreign_exception(data: bytes) -> None:
    CASES["codec bytes"] += 1
    error = typed(lambda: loads(data, key="cb/x.json"))
    if error is not None:
        assert isinstance(error, CorruptObjectError)
        assert error.key == "cb/x.json"
        assert error.codebase_id == "cb"
