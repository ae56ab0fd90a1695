"""Training text for the LM stage: documents from every source shape, EOS-separated packing
with nothing truncated, the held-out split, the token cache; and the real diffset and
snapshot artifacts of two months built from the sample mirror, trained on."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

pytest.importorskip("torch").set_num_threads(1)  # tiny model: one thread is fastest
pytest.importorskip("transformers")

from conftest import sample_pages  # noqa: E402
from twiki.engine.paths import DataRoot  # noqa: E402
from twiki.lm import TrainConfig, train  # noqa: E402
from twiki.lm.data import (  # noqa: E402
    Blocks,
    collate,
    is_heldout,
    load_documents,
    source_kind,
    tokenize_source,
)
from twiki.lm.models import load_tokenizer  # noqa: E402
from twiki.sources.download import download_month  # noqa: E402
from twiki.stages.diff import diff_months  # noqa: E402
from twiki.stages.extract import ExtractConfig, extract_month  # noqa: E402
from twiki.stages.training_text import iter_documents  # noqa: E402


@pytest.fixture(scope="module")
def tok(kit):
    return load_tokenizer(str(kit.model))


def test_documents_from_a_snapshot_file_and_a_documents_file(kit):
    snap = list(load_documents(kit.pair.snapshot_b))
    diff = list(load_documents(kit.pair.diffset))
    assert source_kind(kit.pair.snapshot_b) == "snapshot"
    assert source_kind(kit.pair.diffset) == "documents"
    assert [d["page_id"] for d in snap] == sorted(d["page_id"] for d in snap)
    anarchism = next(d for d in snap if d["title"] == "Anarchism")
    assert anarchism["text"].startswith("Anarchism is a political philosophy")
    assert "\n\n" in anarchism["text"]                 # paragraphs joined with blank lines
    assert {d["page_id"] for d in diff} < {d["page_id"] for d in snap}


def test_packing_separates_documents_with_eos_and_truncates_nothing(kit, tok, tmp_path):
    ts = tokenize_source(kit.pair.diffset, tok, tmp_path, split="train", heldout_permille=0,
                         prepend_title=True)
    docs = list(load_documents(kit.pair.diffset))
    want = []
    for d in docs:
        want += tok(f"{d['title']}\n\n{d['text']}")["input_ids"] + [tok.eos_token_id]
    assert ts.tokens.tolist() == want
    assert ts.meta["documents"] == len(docs) and ts.n_tokens == len(want)
    assert max(len(tok(d["text"])["input_ids"]) for d in docs) > 32   # documents span blocks
    blocks = Blocks(ts.tokens, 32)
    x, y, mask = collate([blocks.window(i) for i in range(len(blocks))], 32, tok.eos_token_id)
    # Every token after the first is a target exactly once, the last block's padding is not.
    assert y[mask].tolist() == want[1:]
    assert x[:, 1:].tolist() == y[:, :-1].tolist()
    assert int(mask.sum()) == blocks.total_targets == len(want) - 1
    assert not mask[-1].all() or len(want) % 32 == 1


def test_heldout_split_is_by_page_and_the_cache_is_reused(kit, tok, tmp_path):
    kw = dict(heldout_permille=300, prepend_title=False)
    train_set = tokenize_source(kit.pair.snapshot_b, tok, tmp_path, split="train", **kw)
    held = tokenize_source(kit.pair.snapshot_b, tok, tmp_path, split="heldout", **kw)
    docs = list(load_documents(kit.pair.snapshot_b))
    n_held = sum(is_heldout(d["page_id"], 300) for d in docs)
    assert 0 < n_held < len(docs)
    assert held.meta["documents"] == n_held
    assert train_set.meta["documents"] + held.meta["documents"] == len(docs)
    mtime = (train_set.folder / "tokens.bin").stat().st_mtime_ns
    again = tokenize_source(kit.pair.snapshot_b, tok, tmp_path, split="train", **kw)
    assert again.folder == train_set.folder
    assert (again.folder / "tokens.bin").stat().st_mtime_ns == mtime
    other = tokenize_source(kit.pair.snapshot_b, tok, tmp_path, split="train",
                            heldout_permille=300, prepend_title=True)
    assert other.folder != train_set.folder and other.n_tokens > train_set.n_tokens


def _edit(page: bytes, paragraph: str) -> bytes:
    """The page with a paragraph put before its wikitext and a new revision sha1."""
    page = re.sub(rb"(<text[^>]*>)", lambda m: m.group(1) + (paragraph + "\n\n").encode(),
                  page, count=1)
    sha = hashlib.sha1(page).hexdigest()[:31]
    return re.sub(rb"<sha1>[^<]*</sha1>", b"<sha1>" + sha.encode() + b"</sha1>", page, count=1)


def test_training_on_real_diffset_and_snapshot_artifacts(tmp_path, mirror, make_run, kit):
    """Month A = sample mirror pages less one article; month B = all of them with an article
    edited. The real extract and diff stages build the artifacts the LM stage reads."""
    header, pages = sample_pages()
    pages = [p for p in pages if b"<redirect" not in p and b"<ns>0</ns>" in p][:30]  # quick
    new_i, edit_i = 3, 5
    added = "In 2016 the article gained this paragraph about its subject, written for the test."
    make_run(mirror, "20160501", pages=[p for i, p in enumerate(pages) if i != new_i], header=header)
    make_run(mirror, "20160601", header=header,
             pages=[_edit(p, added) if i == edit_i else p for i, p in enumerate(pages)])
    root = DataRoot(tmp_path / "data")
    for month in ("2016-05", "2016-06"):
        download_month(month, mirrors=[str(mirror)], data_root=root)
        extract_month(month, data_root=root, config=ExtractConfig(shards=2))
    res = diff_months("2016-05", "2016-06", data_root=root)
    diffset, snapshot = res.path, root.snapshot("enwiki", "2016-06")
    assert source_kind(diffset) == "diffset" and source_kind(snapshot) == "snapshot"
    docs = list(load_documents(diffset))
    assert docs == list(iter_documents(diffset, view="diffset"))
    assert len(docs) == 2 and any(d["text"] == added for d in docs)
    common = dict(model=str(kit.model), block_size=32, micro_batch_size=2, max_steps=2,
                  heldout_permille=0)
    d = train(TrainConfig(run_dir=str(tmp_path / "diff"), train_data=str(diffset), method="diff",
                          **common))
    f = train(TrainConfig(run_dir=str(tmp_path / "full"), train_data=str(snapshot), method="full",
                          **common))
    assert d.data_kind == "diffset" and f.data_kind == "snapshot"
    assert d.train_documents == 2 and f.train_documents == len(list(load_documents(snapshot)))
    assert d.train_tokens_available * 10 < f.train_tokens_available
    with pytest.raises(Exception, match="is a diffset: use method diff"):
        train(TrainConfig(run_dir=str(tmp_path / "x"), train_data=str(diffset), method="full",
                          **common))


def test_token_dtype_fits_the_vocabulary():
    from twiki.lm.data import token_dtype

    assert token_dtype(50257) == "uint16" and token_dtype(65536) == "uint16"
    assert token_dtype(65537) == "uint32" and np.dtype(token_dtype(128256)) == np.uint32
