"""Sharing one analysis between checkouts at different paths (documee_remote.sharing).

Library-level: no Documee engine (tests/upstream/test_sharing_engine.py runs it).
The real fixtures of ../shared are used when present; the hand-made quirk
fixtures always are.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from documee_remote import PersistenceManager, codec
from documee_remote.errors import ConfigurationError
from documee_remote.journal import GraphUpdate
from documee_remote.merge import new_analysis
from documee_remote.models import (
    CircularDependency,
    CodebaseAnalysis,
    DependencyEdge,
    DependencyGraph,
    DetectedPattern,
    FileAnalysis,
    FileNode,
)
from documee_remote.sharing import (
    ENV_CHECKOUT_ROOT,
    ENV_SHARE_CONFIG,
    ENV_SHARED_ID,
    ENV_SHARED_ROOT,
    Checkout,
    Sharing,
    documee_codebase_id,
    move_analysis,
    move_hashes,
)
from documee_remote.stores import MemoryStore
from documee_remote.testing.factories import content_hash, make_file_analysis

from .conftest import codebase_dirs, fixture_id

ALICE = "/home/alice/repo"
BOB = "/Users/bob/src/repo"
WIN = "C:\\Users\\carol\\repo"
SHARED = "/srv/code/repo"


@pytest.fixture(autouse=True)
def _no_sharing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own sharing configuration must not leak into these tests.
    for name in (ENV_SHARE_CONFIG, ENV_CHECKOUT_ROOT, ENV_SHARED_ROOT, ENV_SHARED_ID):
        monkeypatch.delenv(name, raising=False)


def analysis_at(
    root: str, rels: list[str], *, sep: str = "/", extra: Sequence[str] = ()
) -> CodebaseAnalysis:
    """An analysis of files ``rels`` under ``root`` with every path field filled.

    ``extra`` paths (outside the checkout) appear in the graph, patterns and files too.
    """
    paths = [root + sep + rel.replace("/", sep) for rel in rels] + list(extra)
    files = {p: make_file_analysis(p, seed=i) for i, p in enumerate(paths)}
    nodes = {
        p: FileNode(
            file_path=p,
            imports=paths[i + 1 : i + 2],
            imported_by=paths[max(i - 1, 0) : i],
            external_imports=["os"],
        )
        for i, p in enumerate(paths)
    }
    edges = [
        DependencyEdge(from_file=a, to_file=b, import_count=1) for a, b in itertools.pairwise(paths)
    ]
    cycles = (
        [CircularDependency.model_validate({"cycle": [*paths[:2], paths[0]], "severity": "high"})]
        if len(paths) > 1
        else []
    )
    return CodebaseAnalysis(
        codebase_id=documee_codebase_id(root),
        file_analyses=files,
        dependency_graph=DependencyGraph(
            nodes=nodes, edges=edges, circular_dependencies=cycles, external_dependencies={"os": 2}
        ),
        global_patterns=[
            DetectedPattern(
                pattern_type="global_x",
                file_path="<codebase>",
                confidence=1.0,
                evidence=["Found 2 instances across codebase"],
                line_numbers=[],
                metadata={},
            )
        ],
        top_teaching_files=[(p, 0.5) for p in paths[:20]],
        metrics=new_analysis("x").metrics,
        analyzed_at="2026-11-24T00:39:32.668719",
    )


# -- paths ----------------------------------------------------------------------------------


def test_documee_id_is_the_one_documee_computes() -> None:
    # The fixture's folder name: Documee's id of the neutral root (fixtures/documee/README.md).
    assert documee_codebase_id("/srv/code/documee-MCP") == "a7ecad83f18875f4"
    # Windows: Documee hashes the path with "/" separators.
    expected = hashlib.sha256(b"C:/Users/carol/repo").hexdigest()[:16]
    assert Checkout(WIN, SHARED).local_id == expected


def test_posix_paths_move_between_roots_and_back() -> None:
    c = Checkout(ALICE, SHARED)
    assert c.shared_id == documee_codebase_id(SHARED)
    assert c.local_id == documee_codebase_id(ALICE)
    assert c.path_out(ALICE + "/src/a.py") == SHARED + "/src/a.py"
    assert c.path_out(ALICE) == SHARED
    assert c.path_in(SHARED + "/src/a.py") == ALICE + "/src/a.py"
    # Outside the checkout, or only sharing a prefix of its name: untouched.
    for outside in ("/home/alice/repo2/a.py", "/etc/hosts", "src/server.py", "<codebase>"):
        assert c.path_out(outside) == outside
        assert c.path_in(outside) == outside
    assert c.path_in("/srv/code/repository/a.py") == "/srv/code/repository/a.py"


def test_windows_checkout_stores_posix_paths_and_gets_its_own_back() -> None:
    c = Checkout(WIN + "\\", SHARED)  # a trailing separator is dropped
    assert c.local_root == WIN
    assert c.path_out(WIN + "\\src\\a.py") == SHARED + "/src/a.py"
    assert c.path_in(SHARED + "/src/a.py") == WIN + "\\src\\a.py"
    assert c.path_out("C:\\Users\\carol\\repo2\\a.py") == "C:\\Users\\carol\\repo2\\a.py"
    # What a POSIX checkout stored is read by the Windows one in its own spelling.
    posix = Checkout(ALICE, SHARED)
    assert c.path_in(posix.path_out(ALICE + "/pkg/mod.py")) == WIN + "\\pkg\\mod.py"


@pytest.mark.parametrize(
    ("local", "shared", "why"),
    [
        ("/", SHARED, "every path"),
        ("C:\\", SHARED, "drive"),
        (ALICE, "/", "every path"),
        (ALICE, "srv/code/repo", "absolute POSIX"),
        (ALICE, "C:\\srv\\repo", "absolute POSIX"),
        ("/srv/code", SHARED, "inside one another"),
        (SHARED + "/sub", SHARED, "inside one another"),
    ],
)
def test_bad_roots_are_configuration_errors(local: str, shared: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why):
        Checkout(local, shared)


def test_bad_shared_id_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="shared_id"):
        Checkout(ALICE, SHARED, shared_id="../team-b")


# -- whole analyses: properties -------------------------------------------------------------

_SEGMENT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=8,
).filter(lambda s: s not in (".", ".."))
_REL = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join)
_ROOT_NAME = st.text(alphabet="abcdefghij_-.", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)


@st.composite
def checkouts(draw: st.DrawFn) -> tuple[Checkout, str]:
    """A checkout (POSIX or Windows) and its separator."""
    name = draw(_ROOT_NAME)
    if draw(st.booleans()):
        return Checkout(f"D:\\work\\{name}", f"/srv/code/{name}"), "\\"
    return Checkout(f"/home/u/{name}", f"/srv/code/{name}"), "/"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkouts(), st.lists(_REL, min_size=0, max_size=6, unique=True), st.lists(_REL, max_size=2))
def test_out_then_in_is_the_identity_and_stores_no_local_root(
    co: tuple[Checkout, str], rels: list[str], outside_rels: list[str]
) -> None:
    checkout, sep = co
    outside = [f"/opt/other/{r}" for r in outside_rels] + ["src/relative.py"]
    local = analysis_at(checkout.local_root, rels, sep=sep, extra=outside)
    local = local.model_copy(update={"codebase_id": checkout.local_id})
    before = codec.dump_codebase_analysis(local)
    sharing = Sharing([checkout])

    stored_id, stored = sharing.analysis_out(checkout.local_id, local)
    stored_bytes = codec.dump_codebase_analysis(stored)
    back = sharing.analysis_in(checkout.local_id, stored)

    assert stored_id == checkout.shared_id
    assert codec.dump_codebase_analysis(back) == before
    assert codec.dump_codebase_analysis(local) == before  # the caller's object is untouched
    text = json.loads(stored_bytes)
    assert text["codebase_id"] == checkout.shared_id
    assert checkout.local_root.encode() not in stored_bytes
    assert json.dumps(text).count(checkout.local_root.replace("\\", "\\\\")) == 0
    for p in outside:  # paths outside the checkout are stored as they are
        assert p in text["file_analyses"]
    inside = [p for p in local.file_analyses if p not in outside]
    assert [k for k in text["file_analyses"] if k not in outside] == [
        checkout.shared_root + "/" + p[len(checkout.local_root) + 1 :].replace("\\", "/")
        for p in inside
    ]
    hashes = {p: content_hash(p) for p in local.file_analyses}
    out_hashes = move_hashes(hashes, checkout.path_out)
    assert checkout.local_root.encode() not in codec.dump_file_hashes(out_hashes)
    assert move_hashes(out_hashes, checkout.path_in) == hashes


def _fixture_root(paths: list[str]) -> str | None:
    """The deepest directory holding every absolute path (the codebase's root)."""
    absolute = [p for p in paths if p.startswith("/") or re.match(r"[A-Za-z]:\\", p)]
    if not absolute:
        return None
    sep = "\\" if "\\" in absolute[0] else "/"
    parts = [p.split(sep)[:-1] for p in absolute]
    common = parts[0]
    for other in parts[1:]:
        n = 0
        while n < min(len(common), len(other)) and common[n] == other[n]:
            n += 1
        common = common[:n]
    return sep.join(common)


def declared(obj: object) -> object:
    """``obj`` as plain data, without the unknown fields of any model in it."""
    if isinstance(obj, BaseModel):
        return {name: declared(getattr(obj, name)) for name in type(obj).model_fields}
    if isinstance(obj, list | tuple):
        return [declared(x) for x in obj]
    if isinstance(obj, dict):
        return {k: declared(v) for k, v in obj.items()}
    return obj


def extras(obj: object) -> list[object]:
    """The unknown fields of every model in ``obj``, in order."""
    found: list[object] = []
    if isinstance(obj, BaseModel):
        if obj.model_extra:
            found.append(obj.model_extra)
        for name in type(obj).model_fields:
            found.extend(extras(getattr(obj, name)))
    elif isinstance(obj, list | tuple):
        for x in obj:
            found.extend(extras(x))
    elif isinstance(obj, dict):
        for v in obj.values():
            found.extend(extras(v))
    return found


def _readable_fixtures() -> list[Path]:
    return [d for d in codebase_dirs() if (d / "analysis.json").stat().st_size > 0]


@pytest.mark.parametrize("codebase_dir", _readable_fixtures(), ids=fixture_id)
def test_real_fixtures_round_trip_byte_for_byte(codebase_dir: Path) -> None:
    raw = (codebase_dir / "analysis.json").read_bytes()
    analysis = codec.load_codebase_analysis(raw)
    root = _fixture_root(list(analysis.file_analyses))
    if root is None:
        pytest.skip("no absolute path in this fixture")
    checkout = Checkout(root, "/srv/shared/codebase", local_id=analysis.codebase_id)
    sharing = Sharing([checkout])
    _, stored = sharing.analysis_out(analysis.codebase_id, analysis)
    declared_text = json.dumps(declared(stored), ensure_ascii=False)
    assert root not in declared_text
    under_root = [p for p in analysis.file_analyses if p.startswith(root)]
    assert under_root
    assert declared_text.count('"/srv/shared/codebase') >= 2 * len(under_root)
    # Unknown fields are stored as they are, paths or not (documented).
    extras_before = json.dumps(extras(analysis), ensure_ascii=False)
    assert json.dumps(extras(stored), ensure_ascii=False) == extras_before
    assert codec.dump_codebase_analysis(sharing.analysis_in(checkout.local_id, stored)) == raw
    hashes_file = codebase_dir / "file_hashes.json"
    if hashes_file.exists():
        hashes = codec.load_file_hashes(hashes_file.read_bytes())
        out = move_hashes(hashes, checkout.path_out)
        assert root.encode() not in codec.dump_file_hashes(out)
        assert (
            codec.dump_file_hashes(move_hashes(out, checkout.path_in)) == hashes_file.read_bytes()
        )


def test_every_path_field_moves() -> None:
    c = Checkout(ALICE, SHARED)
    a = analysis_at(ALICE, ["a.py", "b.py"])
    stored = move_analysis(a, c.path_out)
    sa, sb = SHARED + "/a.py", SHARED + "/b.py"
    assert list(stored.file_analyses) == [sa, sb]
    assert stored.file_analyses[sa].file_path == sa
    assert stored.file_analyses[sa].patterns[0].file_path == sa
    g = stored.dependency_graph
    assert list(g.nodes) == [sa, sb]
    assert g.nodes[sa].file_path == sa
    assert g.nodes[sa].imports == [sb]
    assert g.nodes[sb].imported_by == [sa]
    assert g.nodes[sa].external_imports == ["os"]  # module names are not paths
    assert (g.edges[0].from_file, g.edges[0].to_file) == (sa, sb)
    assert g.circular_dependencies[0].cycle == [sa, sb, sa]
    assert g.circular_dependencies[0].model_extra == {"severity": "high"}  # unknown field kept
    assert [p for p, _ in stored.top_teaching_files] == [sa, sb]
    assert stored.global_patterns[0].file_path == "<codebase>"


def test_a_path_outside_the_checkout_under_the_shared_root_is_refused() -> None:
    c = Checkout(ALICE, SHARED)
    a = analysis_at(ALICE, ["a.py"], extra=[SHARED + "/a.py"])
    with pytest.raises(ConfigurationError, match="two paths map to"):
        move_analysis(a, c.path_out)


# -- through the manager: two checkouts, one store -------------------------------------------


def two_machines() -> tuple[MemoryStore, PersistenceManager, PersistenceManager]:
    store = MemoryStore()
    alice = PersistenceManager(store, checkout=Checkout(ALICE, SHARED, shared_id="repo"))
    bob = PersistenceManager(store, checkout=Checkout(BOB, SHARED, shared_id="repo"))
    return store, alice, bob


def stored_bytes(store: MemoryStore) -> bytes:
    return b"\n".join(store.get(k).data for k in sorted(store.list()))


def test_two_checkouts_share_one_analysis_through_the_manager() -> None:
    store, alice, bob = two_machines()
    alice_id, bob_id = documee_codebase_id(ALICE), documee_codebase_id(BOB)
    a = analysis_at(ALICE, ["src/a.py", "src/b.py"])
    hashes = {p: content_hash(p[len(ALICE) :]) for p in a.file_analyses}
    alice.save_analysis(alice_id, a)
    alice.save_file_hashes(alice_id, hashes)

    assert {k.split("/")[0] for k in store.list()} == {"repo"}
    assert ALICE.encode() not in stored_bytes(store)

    seen = bob.load_analysis(bob_id)
    assert seen is not None
    assert seen.codebase_id == bob_id
    assert list(seen.file_analyses) == [BOB + "/src/a.py", BOB + "/src/b.py"]
    assert seen.dependency_graph.edges[0].from_file == BOB + "/src/a.py"
    assert bob.get_file_hashes(bob_id) == {BOB + p[len(ALICE) :]: h for p, h in hashes.items()}
    one = bob.load_file_analysis(bob_id, BOB + "/src/b.py")
    assert one is not None
    assert one.file_path == BOB + "/src/b.py"
    many = bob.load_file_analyses(bob_id, [BOB + "/src/a.py", BOB + "/nope.py"])
    assert many[BOB + "/nope.py"] is None
    assert many[BOB + "/src/a.py"] is not None
    assert many[BOB + "/src/a.py"].file_path == BOB + "/src/a.py"  # type: ignore[union-attr]
    # Saved back by Bob: the same bytes Alice stored (paths and id are the shared ones).
    before = stored_bytes(store)
    report = bob.save_analysis(bob_id, seen)
    bob.save_file_hashes(bob_id, bob.get_file_hashes(bob_id))
    assert report.codebase_id == "repo"
    assert not report.analysis_written
    assert report.uploaded == 0
    assert stored_bytes(store) == before


def test_merges_and_appends_move_their_paths() -> None:
    store, alice, bob = two_machines()
    alice_id, bob_id = documee_codebase_id(ALICE), documee_codebase_id(BOB)
    alice.save_analysis(alice_id, analysis_at(ALICE, ["a.py", "b.py"]))
    new = BOB + "/c.py"
    merged = bob.merge_file_analyses(
        bob_id,
        {new: make_file_analysis(new)},
        {new: content_hash("c")},
        removed=[BOB + "/a.py"],
        graph=GraphUpdate(
            nodes={
                new: FileNode(
                    file_path=new, imports=[BOB + "/b.py"], imported_by=[], external_imports=[]
                )
            }
        ),
    )
    assert list(merged.file_analyses) == [BOB + "/b.py", new]
    assert merged.dependency_graph.nodes[new].imports == [BOB + "/b.py"]
    bob.append_file_analyses(bob_id, {BOB + "/d.py": make_file_analysis(BOB + "/d.py")}, {})
    seen = alice.load_analysis(alice_id)
    assert seen is not None
    assert set(seen.file_analyses) == {ALICE + "/b.py", ALICE + "/c.py", ALICE + "/d.py"}
    assert alice.get_file_hashes(alice_id)[ALICE + "/c.py"] == content_hash("c")
    data = stored_bytes(store)
    assert ALICE.encode() not in data
    assert BOB.encode() not in data


def test_update_analysis_sees_local_paths() -> None:
    _, alice, bob = two_machines()
    alice.save_analysis(documee_codebase_id(ALICE), analysis_at(ALICE, ["a.py"]))
    seen: list[str] = []

    def fn(a: CodebaseAnalysis) -> None:
        seen.extend(a.file_analyses)
        a.file_analyses[BOB + "/z.py"] = make_file_analysis(BOB + "/z.py")

    result = bob.update_analysis(documee_codebase_id(BOB), fn)
    assert seen == [BOB + "/a.py"]
    assert list(result.file_analyses) == [BOB + "/a.py", BOB + "/z.py"]
    again = alice.load_analysis(documee_codebase_id(ALICE))
    assert again is not None
    assert ALICE + "/z.py" in again.file_analyses


def test_delete_and_unconfigured_ids() -> None:
    store, alice, bob = two_machines()
    alice.save_analysis(documee_codebase_id(ALICE), analysis_at(ALICE, ["a.py"]))
    # An id no checkout configures passes through, paths and all.
    other = analysis_at("/opt/other", ["x.py"])
    alice.save_analysis("other", other)
    assert store.get("other/analysis.json").data == codec.dump_codebase_analysis(other)
    assert alice.load_analysis("other") == other
    assert bob.delete_analysis(documee_codebase_id(BOB)) is True
    assert alice.load_analysis(documee_codebase_id(ALICE)) is None
    assert alice.list_codebases() == ["other"]


# -- configuration --------------------------------------------------------------------------


def test_documee_one_argument_construction_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_CHECKOUT_ROOT, BOB)
    monkeypatch.setenv(ENV_SHARED_ROOT, SHARED)
    monkeypatch.setenv(ENV_SHARED_ID, "repo")
    pm = PersistenceManager(str(tmp_path / "store"))  # as Documee's engine builds it
    pm.save_analysis(documee_codebase_id(BOB), analysis_at(BOB, ["a.py"]))
    assert (tmp_path / "store" / "repo" / "analysis.json").exists()
    assert BOB.encode() not in (tmp_path / "store" / "repo" / "analysis.json").read_bytes()


def test_config_file_maps_several_checkouts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "sharing.toml"
    config.write_text(
        f'[[checkout]]\nlocal_root = "{ALICE}"\nshared_root = "{SHARED}"\nshared_id = "repo"\n\n'
        f"[[checkout]]\nlocal_root = '{WIN}'\nshared_root = \"/srv/code/other\"\n"
    )
    monkeypatch.setenv(ENV_SHARE_CONFIG, str(config))
    monkeypatch.setenv(ENV_CHECKOUT_ROOT, BOB)
    monkeypatch.setenv(ENV_SHARED_ROOT, "/srv/code/third")
    sharing = Sharing.from_environment()
    assert [c.local_root for c in sharing.checkouts] == [ALICE, WIN, BOB]
    assert sharing.stored_id(documee_codebase_id(ALICE)) == "repo"
    assert sharing.stored_id(documee_codebase_id(WIN)) == documee_codebase_id("/srv/code/other")
    assert sharing.stored_id("unconfigured") == "unconfigured"
    assert PersistenceManager("memory://").sharing.stored_id(documee_codebase_id(BOB)) == (
        documee_codebase_id("/srv/code/third")
    )


@pytest.mark.parametrize(
    ("env", "content", "match"),
    [
        ({ENV_CHECKOUT_ROOT: ALICE}, None, ENV_SHARED_ROOT),
        ({ENV_SHARED_ID: "repo"}, None, ENV_CHECKOUT_ROOT),
        ({ENV_CHECKOUT_ROOT: ALICE, ENV_SHARED_ROOT: "relative"}, None, ENV_CHECKOUT_ROOT),
        ({}, "not toml [", "not TOML"),
        ({}, '[[checkout]]\nlocal_root = "/a/b"\n', "missing: \\['shared_root'\\]"),
        ({}, '[[checkout]]\nlocal_root = "/a/b"\nshared_root = "/s/b"\ncolour = "x"\n', "colour"),
        ({}, "something = 1\n", "only \\[\\[checkout\\]\\]"),
        (
            {},
            '[[checkout]]\nlocal_root = "/a/b"\nshared_root = "/s/b"\n'
            '[[checkout]]\nlocal_root = "/a/b/c"\nshared_root = "/s/c"\n',
            "overlap",
        ),
    ],
)
def test_bad_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    content: str | None,
    match: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if content is not None:
        (tmp_path / "s.toml").write_text(content)
        monkeypatch.setenv(ENV_SHARE_CONFIG, str(tmp_path / "s.toml"))
    with pytest.raises(ConfigurationError, match=match):
        PersistenceManager("memory://")


def test_inconsistent_checkouts_are_refused() -> None:
    two_roots = [
        Checkout(ALICE, SHARED, shared_id="r"),
        Checkout(BOB, "/srv/code/x", shared_id="r"),
    ]
    with pytest.raises(ConfigurationError, match="two shared roots"):
        Sharing(two_roots)
    bob_id = documee_codebase_id(BOB)
    with pytest.raises(ConfigurationError, match="also the local id"):
        Sharing([Checkout(ALICE, SHARED, shared_id=bob_id), Checkout(BOB, "/srv/code/x")])
    # Two worktrees of one repository on one machine: both share it.
    both = Sharing([Checkout(ALICE, SHARED, shared_id="r"), Checkout(BOB, SHARED, shared_id="r")])
    assert {both.stored_id(c.local_id) for c in both.checkouts} == {"r"}


def test_missing_config_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_SHARE_CONFIG, str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigurationError, match=ENV_SHARE_CONFIG):
        Sharing.from_environment()


def test_no_configuration_means_no_sharing() -> None:
    pm = PersistenceManager("memory://")
    assert not pm.sharing
    a = analysis_at(ALICE, ["a.py"])
    pm.save_analysis(a.codebase_id, a)
    assert pm.store.get(a.codebase_id + "/analysis.json").data == codec.dump_codebase_analysis(a)


def test_a_file_analysis_round_trips_alone() -> None:
    c = Checkout(ALICE, SHARED)
    fa: FileAnalysis = make_file_analysis(ALICE + "/x.py")
    sharing = Sharing([c])
    _, stored = sharing.path_out(c.local_id, fa.file_path)
    assert stored == SHARED + "/x.py"
    back = sharing.file_in(c.local_id, fa.model_copy(update={"file_path": stored}))
    assert back is not None
    assert back.file_path == ALICE + "/x.py"


def test_id_only_methods_reach_the_shared_codebase() -> None:
    _, alice, bob = two_machines()
    bob_id = documee_codebase_id(BOB)
    alice.save_analysis(documee_codebase_id(ALICE), analysis_at(ALICE, ["a.py"]))
    etag = bob.load_analysis_etag(bob_id)
    assert etag is not None
    assert etag == alice.load_analysis_etag(documee_codebase_id(ALICE))
    report = bob.verify(bob_id)
    assert report.codebase_id == "repo"
    assert report.ok
    assert bob.gc(bob_id, dry_run=True).codebase_id == "repo"
    assert bob.compact(bob_id).codebase_id == "repo"
    with bob.lease(bob_id, ttl=5, auto_renew=False) as lease:
        assert lease.codebase_id == "repo"
    with bob.transaction(bob_id) as txn:  # the stored form, as documented
        assert txn.codebase_id == "repo"
        assert list(txn.analysis.file_analyses) == [SHARED + "/a.py"]


def test_update_analysis_may_hand_back_documee_shaped_data() -> None:
    store, alice, bob = two_machines()
    alice.save_analysis(documee_codebase_id(ALICE), analysis_at(ALICE, ["a.py"]))
    new = BOB + "/y.py"

    def fn(a: CodebaseAnalysis) -> dict[str, object]:
        data = a.to_dict()  # plain data, as Documee's objects give it
        data["file_analyses"][new] = make_file_analysis(new).to_dict()
        return data

    result = bob.update_analysis(documee_codebase_id(BOB), fn)
    assert list(result.file_analyses) == [BOB + "/a.py", new]
    stored = codec.load_codebase_analysis(store.get("repo/analysis.json").data)
    assert list(stored.file_analyses) == [SHARED + "/a.py", SHARED + "/y.py"]
