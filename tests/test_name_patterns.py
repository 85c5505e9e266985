"""A layout's ``name_pattern_hint`` must let through every name its ``interesting`` keeps.

A full listing filters names by the hints before it looks at what they are; a hint
that is too narrow would hide a checkpoint from the scan, silently.
"""

from __future__ import annotations

import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from ckptwatch.dirindex import DirIndex
from ckptwatch.layouts import layout_class, names

HINTED = [layout_class(n) for n in names() if layout_class(n).name_pattern_hint is not None]

# Names the frameworks really write (see LAYOUTS.md), and near misses.
KNOWN = [
    "checkpoint", "checkpoint.tmp1a2b", "model.ckpt-10.index", "model.ckpt-10.data-00000-of-00001",
    "model.ckpt-10_temp", "model.ckpt-10.index.tempstate123", "ckpt-3.data-00000-of-00001.tempstate9",
    "checkpoint-500", "tmp-checkpoint-500", "checkpoint-500.zip", "xcheckpoint-1", "checkpoints",
    "checkpoint_000001", "step_100", "100", "last.pt", "epoch=0-step=3.ckpt", "_temp", "a_temp",
]
name_chars = string.ascii_letters + string.digits + "._-=~"
built = st.lists(st.sampled_from(["checkpoint", "tmp-", "-", "_temp", ".tempstate", ".index", "model.ckpt", "1"])
                 | st.text(name_chars, min_size=1, max_size=4), min_size=1, max_size=5).map("".join)


def test_some_layouts_have_hints():
    assert {cls.name for cls in HINTED} >= {"tf", "hf"}


@settings(max_examples=3000)
@given(name=built | st.sampled_from(KNOWN), is_dir=st.booleans())
def test_every_interesting_name_matches_its_layouts_hint(name, is_dir):
    for cls in HINTED:
        if cls.interesting(name, is_dir):
            assert re.search(cls.name_pattern_hint, name), (cls.name, name, is_dir)


def test_a_listing_by_names_finds_what_a_listing_by_entries_finds(tmp_path):
    for name in KNOWN:
        if "." in name and not name.endswith("_temp"):
            (tmp_path / name).write_bytes(b"")
        else:
            (tmp_path / name).mkdir()
    for cls in HINTED:
        index = DirIndex(str(tmp_path), [cls])
        assert index._name_filter is not None
        assert index._list(index._name_filter) == index._list(None), cls.name
