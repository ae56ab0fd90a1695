"""Training text for the LM stage: documents -> a token file -> fixed-length packed blocks.

Reads documents {page_id, title, text} from a diffset or snapshot artifact
(twiki.stages.training_text), a training-text export, or any Parquet file/folder with title +
text (or a snapshot's paragraphs), streaming by row groups. Writes a token cache folder
(`tokens.bin` + `meta.json`, nanoGPT style) that training memory-maps, so a snapshot of
billions of tokens is never in RAM.

Packing: every document is followed by EOS (and starts with BOS where the model family
expects one: `bos_token_id`) and the documents form one token stream, cut into
windows of block_size + 1 tokens with a stride of block_size. A window's first block_size
tokens are the input and its last block_size tokens the targets, so every token of the stream
but the first is a target exactly once; the last window is shorter and padded, its padding
masked out of the loss. Nothing is truncated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ..engine.artifacts import MANIFEST, canonical_json, file_sha256, read_manifest, shard_of
from ..errors import ConfigError, InputError

# Bump when tokenization or the file layout changes: token caches made before are rebuilt.
# 2: a BOS before every document where the tokenizer adds one (bos_token_id).
TOKENS_VERSION = 2
# Documents tokenized per call of the tokenizer (a fast tokenizer batches them in Rust).
TOKENIZE_BATCH = 512

SOURCE_KINDS = ("diffset", "snapshot", "documents")


# ---------------------------------------------------------------------------------------
# Documents


def source_kind(path: str | Path) -> str:
    """What a training-text path holds: "diffset", "snapshot" or "documents".

    An artifact folder says so in its manifest (stage "diff" or "extract"); a plain Parquet
    file or folder is a snapshot when it has a `paragraphs` column, documents when it has `text`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no training text at {path}: build the diffset or snapshot first, "
                         f"or give a Parquet file/folder with title and text columns")
    if path.is_dir():
        manifest = read_manifest(path)
        stage = (manifest or {}).get("stage")
        if stage == "diff":
            return "diffset"
        if stage == "extract":
            return "snapshot"
    names = set(pq.read_schema(_parquet_files(path)[0]).names)
    if "paragraphs" in names:
        return "snapshot"
    if {"title", "text"} <= names:
        return "documents"
    raise InputError(f"{path} has neither title + text nor paragraphs columns "
                     f"(it has {sorted(names)}): not training text")


def _parquet_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path} holds no .parquet files")
    return files


def snapshot_document(page_id: int, title: str, paragraphs: Iterable[dict] | None) -> dict:
    """A snapshot row (twiki.stages.extract.SCHEMA) as a document: its paragraphs joined with blank
    lines, as twiki.stages.training_text.iter_documents joins them, so both views read alike."""
    return {"page_id": page_id, "title": title,
            "text": "\n\n".join(p["text"] for p in paragraphs or () if p["text"])}


def load_documents(path: str | Path) -> Iterator[dict]:
    """Yield {page_id, title, text} from a diffset, a snapshot, or a Parquet file/folder of
    documents, one row group at a time. Documents without text are skipped.

    Artifact folders go through twiki.stages.training_text.iter_documents (the diffset's rows of
    one article joined into one document). A document without a page_id gets the CRC32 of its title, which
    is what decides whether it is held out.
    """
    path = Path(path)
    kind = source_kind(path)
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is not None and manifest.get("stage") in ("diff", "extract"):
        from ..stages.training_text import iter_documents
        yield from iter_documents(path, view="diffset" if kind == "diffset" else "snapshot")
        return
    for file in _parquet_files(path):
        pf = pq.ParquetFile(file)
        columns = [c for c in ("page_id", "title", "text", "paragraphs")
                   if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(columns=columns, batch_size=1024):
            d = batch.to_pydict()
            n = batch.num_rows
            ids = d.get("page_id") or [None] * n
            for i in range(n):
                title = d["title"][i] or ""
                pid = ids[i] if ids[i] is not None else zlib.crc32(title.encode())
                doc = (snapshot_document(pid, title, d["paragraphs"][i]) if kind == "snapshot"
                       else {"page_id": pid, "title": title, "text": d["text"][i] or ""})
                if doc["text"]:
                    yield doc


def document_text(doc: dict, prepend_title: bool) -> str:
    """The text a document is trained on: optionally its title as a first line."""
    return f"{doc['title']}\n\n{doc['text']}" if prepend_title and doc.get("title") else doc["text"]


def is_heldout(page_id: int, permille: int) -> bool:
    """Whether a page's documents are held out of training (kept for held-out perplexity):
    a fixed hash of page_id, so the same pages are held out in every month and every run."""
    return permille > 0 and shard_of(int(page_id) & 0x7FFFFFFFFFFFFFFF, 1000) < permille


# ---------------------------------------------------------------------------------------
# Token files


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that decides the token ids of a text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else canonical_json(
        sorted(tokenizer.get_vocab().items()))
    h = hashlib.sha256(body.encode())
    h.update(f"|{type(tokenizer).__name__}|{tokenizer.eos_token_id}|{len(tokenizer)}".encode())
    return h.hexdigest()


def bos_token_id(tokenizer: Any) -> int | None:
    """The BOS id every document and probe starts with, or None for none.

    A model family that was trained with a BOS (Llama, Mistral, Gemma...) has a tokenizer that
    adds it when it encodes with special tokens; GPT-2's and SmolLM2's define a BOS token or
    not but never add it, and their models were trained without. So the tokenizer's own
    behaviour decides, not the mere existence of a bos_token.
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return None
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos if ids and ids[0] == bos else None


def artifact_fingerprint(path: str | Path) -> dict:
    """What identifies an input's content, for keying results by their inputs: an artifact
    folder's _manifest.json (its sha256: any rebuild writes a new one), else every Parquet
    file's sha256. Cheap for artifacts; files are hashed once per process and (size, mtime)."""
    path = Path(path)
    if not path.exists():
        return {"missing": str(path)}
    if path.is_dir() and (path / MANIFEST).is_file():
        return {"manifest_sha256": _sha256_cached(path / MANIFEST)}
    return {"files": [[f.name, _sha256_cached(f)] for f in _parquet_files(path)]}


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256_cached(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_sha256(path)
    return _SHA_MEMO[key]


def folder_fingerprint(path: str | Path) -> dict:
    """sha256 of every file of a model folder (weights, config, tokenizer), memoised."""
    path = Path(path)
    return {"files": [[str(f.relative_to(path)), _sha256_cached(f)]
                      for f in sorted(path.rglob("*")) if f.is_file()]}


def source_fingerprint(path: str | Path) -> dict:
    """What identifies a training-text source: an artifact's key, or each file's sha256."""
    path = Path(path)
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is not None and "key" in manifest:
        return {"artifact": manifest.get("stage"), "key": manifest["key"]}
    return {"files": [[f.name, f.stat().st_size, _sha256_cached(f)]
                      for f in _parquet_files(path)]}


@dataclass
class TokenSet:
    """One tokenized split of a source: a memory-mapped token stream and its counts."""

    folder: Path
    meta: dict

    @property
    def tokens(self) -> np.ndarray:
        n = self.meta["tokens"]
        if n == 0:
            return np.zeros(0, dtype=self.meta["dtype"])
        return np.memmap(self.folder / "tokens.bin", dtype=self.meta["dtype"], mode="r",
                         shape=(n,))

    @property
    def n_tokens(self) -> int:
        return self.meta["tokens"]


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= np.iinfo(np.uint16).max + 1 else "uint32"


def tokenize_source(source: str | Path, tokenizer: Any, cache_root: str | Path, *,
                    split: str, heldout_permille: int, prepend_title: bool,
                    progress: bool = True) -> TokenSet:
    """Tokenize the `split` ("train" or "heldout") of a source into a cached token file.

    The cache folder is named by a hash of the source, the tokenizer, the split rule and the
    text format, so a second run (another method, a resumed run) reuses it; it is written in a
    sibling temporary folder and renamed into place, so a killed tokenization leaves nothing.
    """
    if split not in ("train", "heldout"):
        raise ConfigError(f"split must be 'train' or 'heldout', not {split!r}")
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token: documents are separated by EOS, "
                          "so give a tokenizer that defines one")
    bos = bos_token_id(tokenizer)
    ident = {"version": TOKENS_VERSION, "source": source_fingerprint(source),
             "tokenizer": tokenizer_fingerprint(tokenizer), "bos": bos, "split": split,
             "heldout_permille": heldout_permille, "prepend_title": prepend_title}
    key = hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:20]
    folder = Path(cache_root) / f"{Path(source).name}-{split}-{key}"
    meta_path = folder / "meta.json"
    if meta_path.exists():
        return TokenSet(folder, json.loads(meta_path.read_text()))

    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = token_dtype(len(tokenizer))
    eos = tokenizer.eos_token_id
    docs = tokens = chars = 0
    t0 = time.perf_counter()
    with open(tmp / "tokens.bin", "wb") as f:
        batch: list[str] = []

        def flush() -> int:
            enc = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
            head = () if bos is None else (bos,)
            arr = np.fromiter((t for ids in enc for t in (*head, *ids, eos)), dtype=dtype)
            arr.tofile(f)
            batch.clear()
            return len(arr)

        for doc in load_documents(source):
            if is_heldout(doc["page_id"], heldout_permille) != (split == "heldout"):
                continue
            text = document_text(doc, prepend_title)
            batch.append(text)
            docs += 1
            chars += len(text)
            if len(batch) >= TOKENIZE_BATCH:
                tokens += flush()
        if batch:
            tokens += flush()
    seconds = time.perf_counter() - t0
    meta = {**ident, "source_path": str(source), "source_kind": source_kind(source),
            "documents": docs, "tokens": tokens, "chars": chars, "dtype": dtype,
            "eos_token_id": eos, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process published the same cache first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return TokenSet(folder, json.loads(meta_path.read_text()))


# ---------------------------------------------------------------------------------------
# Packed blocks


class Blocks:
    """A token stream seen as windows of block_size + 1 tokens with stride block_size."""

    def __init__(self, tokens: np.ndarray, block_size: int):
        self.tokens = tokens
        self.block_size = block_size
        self.n = max(0, -(-(len(tokens) - 1) // block_size))  # ceil((N - 1) / block_size)

    def __len__(self) -> int:
        return self.n

    def window(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n:
            raise IndexError(i)
        start = i * self.block_size
        return np.asarray(self.tokens[start:start + self.block_size + 1], dtype=np.int64)

    def targets(self, i: int) -> int:
        """Tokens predicted in window i (block_size, fewer in the last window)."""
        return len(self.window(i)) - 1

    @property
    def total_targets(self) -> int:
        return max(0, len(self.tokens) - 1)


class ConcatBlocks:
    """Several token streams' blocks as one sequence (each stream packed on its own), without
    copying any of them into memory: replay text of several earlier months."""

    def __init__(self, parts: list[Blocks]):
        self.parts = [p for p in parts if len(p)]
        self.block_size = parts[0].block_size
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[Blocks, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k], i - int(self.starts[k])

    def window(self, i: int) -> np.ndarray:
        part, j = self._locate(i)
        return part.window(j)

    def targets(self, i: int) -> int:
        part, j = self._locate(i)
        return part.targets(j)

    @property
    def total_targets(self) -> int:
        return sum(p.total_targets for p in self.parts)


def collate(windows: list[np.ndarray], block_size: int, pad_id: int):
    """Stack windows into (input_ids, targets, loss_mask), right-padding short ones.

    Right padding needs no attention mask in a causal LM: no real position attends to a later
    (padded) one, and the padded positions are masked out of the loss.
    """
    import torch

    x = np.full((len(windows), block_size + 1), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), block_size), dtype=bool)
    for r, w in enumerate(windows):
        x[r, :len(w)] = w
        mask[r, :len(w) - 1] = True
    x = torch.from_numpy(x)
    return x[:, :-1].contiguous(), x[:, 1:].contiguous(), torch.from_numpy(mask)
