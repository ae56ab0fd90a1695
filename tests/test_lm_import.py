"""`twiki import-gguf` errors a user can cause, without the model package."""

from __future__ import annotations

import pytest

from twiki.cli import main
from twiki.errors import ConfigError, InputError
from twiki.lm.gguf import import_gguf, resolve_gguf


def test_a_file_that_is_not_gguf_is_named(tmp_path, capsys):
    (tmp_path / "model.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="is not a .gguf file"):
        resolve_gguf(tmp_path / "model.bin")
    assert main(["import-gguf", str(tmp_path / "model.bin"), "--out", str(tmp_path / "m")]) != 0
    assert "is not a .gguf file" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_folder_of_something_else_is_not_overwritten(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--overwrite"):
        import_gguf(tmp_path / "x.gguf", keep)
    assert (keep / "notes.txt").read_text() == "mine"
