"""Hypothesis strategies shared by the fuzz and isolation tests."""

from __future__ import annotations

from hypothesis import strategies as st

SEGMENTS = [
    "..",
    ".",
    "",
    "a",
    "cb",
    "C:",
    "c:x",
    "\\",
    "a\\b",
    "é",
    "\x00",
    "\x7f",
    "\u200b",
    "team-b",
    ".tmp-x",
    ".hidden",
    "%2e%2e",
    "%2F",
    "\u2025",
    "\uff0f",
    "a" * 256,
    "a" * 255,
    "~",
    "*",
    "?",
    "analysis.json",
    " ",
    "\ufeff",
    "\U0001f600",
]
_plain_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs"), blacklist_characters="/\\"),
    min_size=1,
    max_size=16,
).filter(lambda s: s not in (".", "..") and not s.startswith("."))
keys = st.one_of(
    st.lists(_plain_segment, min_size=1, max_size=4).map("/".join),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6).map("/".join),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s)),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(lambda s: "/".join(s) + "/"),
    st.text(max_size=40),
    st.just("/".join(["seg"] * 300)),
)
