"""The LM stage's training: every method on the sample month pair, with a tiny GPT-2 built
from a config and a tokenizer trained here (no hub)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
# Tiny matrices: one thread is fastest, and it keeps a busy shared machine from thrashing.
torch.set_num_threads(1)
pytest.importorskip("transformers")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from twiki.errors import ConfigError  # noqa: E402
from twiki.lm import METHODS, EvalConfig, TrainConfig, evaluate, train  # noqa: E402
from twiki.lm.data import Blocks, tokenize_source  # noqa: E402
from twiki.lm.models import load_hf_model, load_tokenizer, load_trained  # noqa: E402
from twiki.lm.training import TrainData, plan_steps  # noqa: E402


def config(kit, run_dir, method, **kw) -> TrainConfig:
    """A few CPU steps with settings that let every method move within them."""
    data = kit.pair.snapshot_b if method == "full" else kit.pair.diffset
    base = dict(run_dir=str(run_dir), model=str(kit.model), train_data=str(data), method=method,
                block_size=32, micro_batch_size=4, max_steps=4, learning_rate=3e-3, warmup=0.0,
                heldout_permille=200, log_every=1, lora_r=4, kadapter_size=16,
                cache_dir=str(kit.pair.folder / "tokens"),
                recadam_gamma=100.0, recadam_t0=0.0, recadam_k=1.0,
                replay_data=(str(kit.pair.snapshot_a),) if method == "mixreview" else ())
    return TrainConfig(**{**base, **kw})


def probe_ppl(kit, model_ref) -> tuple[float, float]:
    ev = evaluate(EvalConfig(model=str(model_ref), probes=str(kit.pair.probes),
                             heldout_max_tokens=0, out=None))
    return ev.unchanged.ppl, ev.changed.ppl


def weights(module) -> dict:
    return {n: p.detach().clone() for n, p in module.state_dict().items()}


@pytest.fixture(scope="module")
def base_ppl(kit):
    return probe_ppl(kit, kit.model)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_moves_probe_perplexity(kit, tmp_path, base_ppl, method):
    res = train(config(kit, tmp_path / method, method))
    assert res.finished and res.step == 4
    assert res.tokens_seen == 4 * 4 * 32          # reported, not guessed: every row is full
    assert res.token_budget == 4 * 4 * 32
    assert res.data_kind == ("snapshot" if method == "full" else "documents")
    un, c = probe_ppl(kit, tmp_path / method)
    assert (un, c) != pytest.approx(base_ppl, rel=1e-6, abs=0)
    ckpt = tmp_path / method / "checkpoint"
    files = {p.suffix for p in ckpt.rglob("*") if p.is_file()}
    assert files <= {".json", ".safetensors", ".md"}, files  # no pickle (peft adds a README)
    lines = [json.loads(x) for x in (tmp_path / method / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]


@pytest.mark.parametrize("method", ["lora", "kadapter"])
def test_adapters_train_only_their_own_parameters(kit, tmp_path, method):
    original = load_file(kit.model / "model.safetensors")
    res = train(config(kit, tmp_path / method, method))
    assert 0 < res.trainable_params < res.total_params
    model, _, info = load_trained(str(tmp_path / method))
    assert info["kind"] == method
    base = model.base if method == "kadapter" else model.get_base_model()
    state = base.state_dict()
    for name, tensor in original.items():
        key = name
        if method == "lora" and key not in state:   # peft renames adapted layers' weights
            key = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(state[key], tensor), name
    # The adapter itself moved away from its start (LoRA's B and K-Adapter's output start at 0).
    saved = load_file(next((tmp_path / method / "checkpoint" / "model").glob("*.safetensors")))
    moved = [k for k, v in saved.items() if ("lora_B" in k or k.startswith("out.")) and v.abs().sum() > 0]
    assert moved


def test_kadapter_is_in_the_forward_pass(kit, tmp_path):
    """Zeroing the adapter's output projection changes the logits of the trained model."""
    train(config(kit, tmp_path / "k", "kadapter"))
    model, tok, _ = load_trained(str(tmp_path / "k"))
    x = torch.tensor([tok("Anarchism is a political philosophy")["input_ids"]])
    with torch.no_grad():
        with_adapter = model(input_ids=x).logits
        model.out.weight.zero_()
        model.out.bias.zero_()
        without = model(input_ids=x).logits
        base = model.base(input_ids=x).logits
    assert not torch.allclose(with_adapter, without)
    assert torch.allclose(without, base, atol=1e-6)


def test_recadam_stays_closer_to_the_start_than_adam(kit, tmp_path):
    start = weights(load_hf_model(str(kit.model)))

    def distance(method):
        train(config(kit, tmp_path / method, method, max_steps=6))
        end = load_hf_model(str(tmp_path / method / "checkpoint" / "model")).state_dict()
        return sum(float((end[k] - v).pow(2).sum()) for k, v in start.items()
                   if v.is_floating_point())

    adam, recadam = distance("diff"), distance("recadam")
    assert 0 < recadam < adam


def test_recadam_pulls_every_parameter_group(kit, tmp_path):
    """Every group (decayed matrices, undecayed biases/norms) has anchors and is pulled."""
    from twiki.lm.methods import RecAdam, parameter_groups

    model = load_hf_model(str(kit.model))
    params = list(model.named_parameters())
    anchors = {p: p.detach().clone() for _, p in params}
    opt = RecAdam(parameter_groups(iter(params), 0.0), anchors, lr=1e-2, gamma=50.0,
                  anneal_k=1.0, anneal_t0=0.0)
    assert len(opt.param_groups) == 2
    with torch.no_grad():                     # move every weight off its anchor
        for _, p in params:
            p.add_(0.1)
    before = opt.distance()
    for _, p in params:
        p.grad = torch.zeros_like(p)          # no task gradient: only the pull acts
    opt.step()
    after = opt.distance()
    assert all(0 < a < b for a, b in zip(after, before)), (before, after)
    with pytest.raises(ValueError, match="no anchor"):
        RecAdam(parameter_groups(iter(params), 0.0), {}, lr=1e-3)


def test_mixreview_replays_several_months(kit, tmp_path):
    res = train(config(kit, tmp_path / "m2", "mixreview", replay_data=(
        str(kit.pair.snapshot_a), str(kit.pair.diffset)), mix_ratio=0.5, max_steps=3))
    assert res.finished and res.replay_tokens_seen > 0


def test_mixreview_batches_hold_replay_text_at_the_ratio(kit, tmp_path):
    cfg = config(kit, tmp_path / "mix", "mixreview", micro_batch_size=5, grad_accum=2,
                 mix_ratio=0.3, mix_decay=0.5, max_steps=None, epochs=1.0)
    tok = load_tokenizer(str(kit.model))
    sets = {name: tokenize_source(path, tok, tmp_path / "cache", split="train",
                                  heldout_permille=cfg.heldout_permille, prepend_title=True)
            for name, path in [("main", cfg.train_data), ("replay", cfg.replay_data[0])]}
    main, replay = Blocks(sets["main"].tokens, 32), Blocks(sets["replay"].tokens, 32)
    steps, replay_rows = plan_steps(cfg, len(main))
    data = TrainData(main, replay, replay_rows, seed=cfg.seed, micro_batch_size=5, grad_accum=2,
                     pad_id=tok.eos_token_id)
    # At the start 3 of every 10 rows are replay; the share halves per epoch of new text.
    # Over every prefix of the run the replay rows are the configured share, to half a row.
    assert replay_rows[:3] == [3, 3, 3]
    main_seen, expected = 0, 0.0
    for t, r in enumerate(replay_rows):
        expected += 10 * 0.3 * 0.5 ** (main_seen / len(main))
        main_seen += 10 - r
        assert abs(sum(replay_rows[:t + 1]) - expected) <= 0.5
    assert len(main) <= main_seen < len(main) + 10           # one epoch of the diffset
    assert replay_rows[-1] < 3
    streams = {k: v.tokens.astype("<i4").tobytes() for k, v in sets.items()}

    def occurs(seq, stream) -> bool:
        needle, at = seq.numpy().astype("<i4").tobytes(), -1
        while (at := stream.find(needle, at + 1)) >= 0:
            if at % 4 == 0:
                return True
        return False

    for step in (0, 1, steps - 1):
        batch = data.get_batch(step)
        flags = torch.cat([b[3] for b in batch])
        assert int(flags.sum()) == replay_rows[step]
        for x, y, mask, is_replay in batch:
            for row, rep in zip(x, is_replay):
                # Replay rows are month A's snapshot text, the others the diffset's.
                mine, other = ("replay", "main") if rep else ("main", "replay")
                assert occurs(row[:16], streams[mine]) and not occurs(row[:16], streams[other])
    res = train(cfg)
    assert 0 < res.replay_tokens_seen <= sum(replay_rows) * 32
    assert res.tokens_seen > res.replay_tokens_seen > 0


@pytest.mark.parametrize("method", ["diff", "recadam", "lora", "kadapter", "mixreview"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(kit, tmp_path, method):
    kw = dict(max_steps=6, save_every=2, lora_dropout=0.1)
    whole = train(config(kit, tmp_path / "whole", method, **kw))
    part = train(config(kit, tmp_path / "part", method, **kw), stop_at_step=3)
    assert not part.finished and part.step == 3
    assert not (tmp_path / "part" / "result.json").exists()
    # A new process would start from nothing but the folder: same call, same config.
    rest = train(config(kit, tmp_path / "part", method, **kw))
    assert rest.finished and rest.step == 6
    assert rest.tokens_seen == whole.tokens_seen
    assert rest.final_loss == whole.final_loss
    a = sorted((tmp_path / "whole" / "checkpoint" / "model").glob("*.safetensors"))
    b = sorted((tmp_path / "part" / "checkpoint" / "model").glob("*.safetensors"))
    assert [p.name for p in a] == [p.name for p in b]
    for fa, fb in zip(a, b):
        wa, wb = load_file(fa), load_file(fb)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ia = load_file(tmp_path / "whole" / "checkpoint" / "optimizer.safetensors")
    ib = load_file(tmp_path / "part" / "checkpoint" / "optimizer.safetensors")
    assert all(torch.equal(ia[k], ib[k]) for k in ia)
    log = [json.loads(x)["step"] for x in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]


def test_a_finished_run_is_a_no_op_and_a_changed_config_is_refused(kit, tmp_path):
    first = train(config(kit, tmp_path / "r", "diff"))
    again = train(config(kit, tmp_path / "r", "diff", log_every=3))   # operational only
    assert again == first
    with pytest.raises(ConfigError, match="learning_rate"):
        train(config(kit, tmp_path / "r", "diff", learning_rate=1e-2))


def test_a_chain_of_months_starts_from_the_previous_run(kit, tmp_path):
    b = train(config(kit, tmp_path / "b", "lora"))
    c = train(config(kit, tmp_path / "c", "lora", model=str(tmp_path / "b")))
    assert b.finished and c.finished
    # The second month continues the first month's adapter over the same frozen base.
    info = json.loads((tmp_path / "c" / "checkpoint" / "twiki_checkpoint.json").read_text())
    assert info["base"] == str(kit.model.resolve())
    wb = load_file(tmp_path / "b" / "checkpoint" / "model" / "adapter_model.safetensors")
    wc = load_file(tmp_path / "c" / "checkpoint" / "model" / "adapter_model.safetensors")
    assert wb.keys() == wc.keys() and any(not torch.equal(wb[k], wc[k]) for k in wb)
    # A whole-model chain: month C's run is a plain Hugging Face model folder.
    train(config(kit, tmp_path / "fb", "diff"))
    train(config(kit, tmp_path / "fc", "diff", model=str(tmp_path / "fb")))
    assert load_hf_model(str(tmp_path / "fc" / "checkpoint" / "model")) is not None
    # An unfinished run cannot start the next month.
    train(config(kit, tmp_path / "half", "diff"), stop_at_step=2)
    with pytest.raises(ConfigError, match="finish it"):
        train(config(kit, tmp_path / "next", "diff", model=str(tmp_path / "half")))


def test_user_errors_are_clear(kit, tmp_path):
    with pytest.raises(ConfigError, match="overshoot"):
        config(kit, tmp_path, "recadam", learning_rate=1e-3, recadam_gamma=5000.0)
    with pytest.raises(ConfigError, match="needs replay_data"):
        config(kit, tmp_path, "mixreview", replay_data=())
    with pytest.raises(ConfigError, match="method must be one of"):
        config(kit, tmp_path, "ewc")
    with pytest.raises(ConfigError, match="is a snapshot: use method full"):
        train(config(kit, tmp_path / "x", "diff", train_data=str(kit.pair.snapshot_b)))
    assert train(config(kit, tmp_path / "x", "diff", max_steps=1)).finished  # name still free
    with pytest.raises(ConfigError, match="longer than the model"):
        train(config(kit, tmp_path / "y", "diff", block_size=4096))
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainConfig.from_dict({"run_dir": "r", "model": "m", "train_data": "d", "lr": 1})
