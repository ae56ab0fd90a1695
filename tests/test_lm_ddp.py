"""Data-parallel training for real: `twiki train` under torchrun with two CPU processes (gloo)
gives the losses and weights of one process taking the same global batch, and a run stopped
after a step resumes on two processes to the same end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402

from twiki.lm import TrainConfig, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# One process sums a step's 4 rows in one pass; two sum 2 rows each and all-reduce: the same
# numbers up to float32 rounding of a different summation order.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or
                                not torch.distributed.is_gloo_available(),
                                reason="this torch has no gloo backend")


@pytest.fixture(scope="module")
def model(kit, tmp_path_factory):
    """The tiny GPT-2 without dropout: each process draws its own masks, so only a model
    without dropout can match one process exactly."""
    import shutil

    out = tmp_path_factory.mktemp("nodrop") / "gpt2"
    shutil.copytree(kit.model, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


SETTINGS = dict(block_size=32, max_steps=4, learning_rate=3e-3, warmup=0.0, heldout_permille=0,
                log_every=1, save_every=2, threads=1)


def torchrun(kit, model, root: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "-m", "twiki", "train", "--month", "2016-06", "--from", "2016-05",
            "--model", str(model), "--method", "diff", "--name", "ddp", "--data-root", str(root),
            "--train-data", str(kit.pair.diffset), "--batch-size", "2", "-q",
            *[f"--set={k}={v}" for k, v in SETTINGS.items()], *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]


def test_two_processes_match_one_and_resume(kit, model, tmp_path):
    one = train(TrainConfig(run_dir=str(tmp_path / "one"), model=str(model),
                            train_data=str(kit.pair.diffset), method="diff", micro_batch_size=4,
                            cache_dir=str(tmp_path / "tokens"), **SETTINGS))
    root = tmp_path / "data"
    first = torchrun(kit, model, root, "--stop-at-step", "2")
    run = root / "runs" / "ddp"
    info = json.loads((run / "checkpoint" / "twiki_checkpoint.json").read_text())
    assert info["step"] == 2 and not info["finished"] and info["world_size"] == 2
    assert "stopped at step 2" in first.stdout
    rng = load_file(run / "checkpoint" / "rng.safetensors")
    assert {"cpu", "rank1.cpu"} <= rng.keys()            # every rank's generator state
    second = torchrun(kit, model, root)                    # the same command resumes it
    assert "finished, 4/4 steps" in second.stdout
    assert second.stdout.count("finished") == 1            # only rank 0 reports
    result = json.loads((run / "result.json").read_text())
    assert result["world_size"] == 2 and result["tokens_seen"] == one.tokens_seen == 4 * 4 * 32
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert losses(run) == pytest.approx(losses(tmp_path / "one"), rel=LOSS_RTOL)
    a = load_file(tmp_path / "one" / "checkpoint" / "model" / "model.safetensors")
    b = load_file(run / "checkpoint" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=WEIGHT_ATOL) for k in a)
    assert any(not torch.equal(a[k], load_file(model / "model.safetensors")[k]) for k in a)
