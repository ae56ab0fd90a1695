"""What makes the LM stage ready for GPUs, checked on the CPU: gradient checkpointing gives
the same numbers, precisions are validated, and `twiki eval --seed` picks its probe sample."""

from __future__ import annotations

import argparse
import json

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytest.importorskip("transformers")
pytest.importorskip("peft")

from twiki.errors import ConfigError  # noqa: E402
from twiki.lm import TrainConfig, train  # noqa: E402
from twiki.lm.cli import add_eval_arguments, cmd_eval  # noqa: E402
from twiki.lm.training import pick_precision  # noqa: E402


@pytest.mark.parametrize("method", ["diff", "lora", "kadapter"])
def test_gradient_checkpointing_changes_no_number(kit, tmp_path, method):
    def run(name, **kw):
        train(TrainConfig(run_dir=str(tmp_path / name), model=str(kit.model),
                          train_data=str(kit.pair.diffset), method=method, block_size=32,
                          micro_batch_size=4, max_steps=3, learning_rate=3e-3, log_every=1,
                          lora_r=4, kadapter_size=16, cache_dir=str(tmp_path / "tokens"), **kw))
        return [json.loads(x)["loss"] for x in (tmp_path / name / "log.jsonl").read_text().splitlines()]

    plain, ckpt = run("plain"), run("ckpt", gradient_checkpointing=True)
    # Dropout is on (0.1): the recomputed forward replays the same masks.
    assert ckpt == pytest.approx(plain, rel=1e-6)


def test_gpu_precisions_are_refused_on_the_cpu():
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu) == "fp32"
    for name in ("bf16-mixed", "fp16-mixed"):
        with pytest.raises(ConfigError, match="for GPUs"):
            pick_precision(name, cpu)
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(run_dir="r", model="m", train_data="d", precision="fp8")


def test_eval_seed_picks_a_seeded_probe_sample(kit, tmp_path, capsys):
    p = argparse.ArgumentParser()
    p.add_argument("--data-root")
    p.add_argument("--month")
    add_eval_arguments(p)

    def run(*extra):
        args = p.parse_args(["--month", "2016-06", "--model", str(kit.model), "--probes",
                             str(kit.pair.probes), "--heldout", str(kit.pair.diffset),
                             "--data-root", str(tmp_path), "--precision", "fp32",
                             "--max-probes", "3", *extra])
        return cmd_eval(args)

    first, again, other = run("--seed", "0"), run("--seed", "0"), run("--seed", "7")
    assert first.unchanged.count == 3
    assert first.unchanged.ppl == again.unchanged.ppl
    assert (other.unchanged.ppl, other.changed.ppl) != (first.unchanged.ppl, first.changed.ppl)
    assert first.inputs_key == again.inputs_key != other.inputs_key
    assert "(fp32" not in capsys.readouterr().err
