"""The month pair of the SmolLM2 preset: real articles with clearly labelled made-up edits."""

from __future__ import annotations

import pyarrow.parquet as pq

from conftest import SAMPLE_MIRROR
from pipelines.lm_samples import build_counterfactual_pair
from twiki.lm.data import load_documents


def test_made_up_edits_are_labelled_and_are_the_only_change(tmp_path):
    sp = build_counterfactual_pair(tmp_path / "cf", mirror=SAMPLE_MIRROR)
    probes = pq.read_table(sp.probes).to_pylist()
    changed = [p for p in probes if p["kind"] == "updated"]
    unchanged = [p for p in probes if p["kind"] == "unchanged"]
    assert len(changed) == 30 and len(unchanged) == 88
    assert all("[made-up edit: the article says" in p["evidence"] for p in changed)
    assert "MADE-UP EDITS" in (sp.folder / "README.md").read_text()
    a = {d["page_id"]: d["text"] for d in load_documents(sp.snapshot_a)}
    b = {d["page_id"]: d["text"] for d in load_documents(sp.snapshot_b)}
    diff = {d["page_id"]: d["text"] for d in load_documents(sp.diffset)}
    assert a.keys() == b.keys() and len(diff) == 16
    assert {pid for pid in a if a[pid] != b[pid]} == set(diff)
    for p in changed:
        real = p["evidence"].split("the article says ")[1].rstrip("]")
        stated = f"{p['subject']} {p['relation']} {p['object']}"
        assert p["object"] != real and stated in diff[p["page_id"]] and stated in b[p["page_id"]]
        assert f"{p['subject']} {p['relation']} {real}" in a[p["page_id"]]
    for p in unchanged:     # real years of sentences no edit touched
        assert f"{p['subject']} {p['relation']} {p['object']}" in a[p["page_id"]]
        assert p["page_id"] not in diff
    again = build_counterfactual_pair(tmp_path / "cf2", mirror=SAMPLE_MIRROR)
    assert (again.probes / "part-00000.parquet").read_bytes() == (sp.probes / "part-00000.parquet").read_bytes()
