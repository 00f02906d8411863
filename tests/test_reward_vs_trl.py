"""Our reward loss and metrics against TRL's RewardTrainer (TRL 1.12.0), on the same model outputs.

A real `trl.RewardTrainer` is built around a tiny random Llama and a tokenizer trained here, and
its own `compute_loss` is run on a batch its own collator made. Our `reward_loss` and
`batch_metrics` must give the same figures from the same rewards, with and without a margin and
a centering coefficient. A batch we build ourselves (text + EOS, chosen rows first, right padding)
must equal TRL's, since bench/rm_vs_trl.py relies on that format to feed both trainers the same
tokens. Then properties of the loss that hold whatever TRL does.

Nothing is downloaded: the hub is switched off, and any attempt to open an internet socket
fails the test.
"""

from __future__ import annotations

import os

# huggingface_hub and datasets read these once, when first imported (maybe by an earlier test
# module; the `offline` fixture covers that case).
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ[_name] = "1"

import math
import random
import socket

# trl and datasets come with the test extra: a missing one is an error here, not a skip.
import datasets
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_workbench.core.reward.loss import batch_metrics, reward_loss

EOS, PAD = "<eos>", "<pad>"
COEFFICIENT = 0.5  # large, so a centering term left out (or squared wrongly) shows above 1e-5

# Pair 3 has chosen == rejected: the same tokens give the same reward, which pins down how TRL
# counts a tie in its accuracy.
PAIRS = [
    ("Human: how do I bake bread?\n\nAssistant: Mix flour, water, yeast and salt, then bake it.",
     "Human: how do I bake bread?\n\nAssistant: Buy some."),
    ("Human: what is two plus two?\n\nAssistant: Four.",
     "Human: what is two plus two?\n\nAssistant: It depends on what you mean by two, plus and four."),
    ("Human: name a colour\n\nAssistant: Blue.", "Human: name a colour\n\nAssistant: Seven."),
    ("Human: say hello\n\nAssistant: Hello!", "Human: say hello\n\nAssistant: Hello!"),
    ("Human: is the sea salty?\n\nAssistant: Yes, it holds about 3.5% salt by weight.",
     "Human: is the sea salty?\n\nAssistant: No."),
    ("Human: a short poem please\n\nAssistant: Rain on the roof, a kettle sings.",
     "Human: a short poem please\n\nAssistant: I cannot write poems about roofs or kettles or rain."),
]
MARGINS = [0.5, -1.0, 2.0, 0.0, 1.5, 3.0]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Switch the hub off even if it was imported earlier, and fail on any internet connection."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"test_reward_vs_trl must not use the network (tried {address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
    assert attempts == [], f"network connections attempted: {attempts}"


def _corpus(n: int = 300) -> list[str]:
    rng = random.Random(0)
    words = ["the", "a", "bread", "sea", "salt", "blue", "poem", "rain", "roof", "kettle", "hello", "four", "two",
             "plus", "colour", "yeast", "flour", "water", "bake", "buy", "depends", "mean", "short", "please"]
    texts = [a + b for a, b in PAIRS]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) for _ in range(n)]
    return texts


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=[PAD, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    # A pad distinct from EOS: the sequence-classification head reads the reward at the last
    # non-pad token, which would otherwise be the token before the EOS TRL appends.
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD)


@pytest.fixture(scope="module")
def model(tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        # A wide initialisation spreads the rewards over a few units; at the default 0.02 they sit
        # near zero and a wrong centering term or margin sign would hide under the tolerance.
        initializer_range=1.0,
    )
    return LlamaForSequenceClassification(config).float()


def _trainer(model, tokenizer, tmp_path_factory, *, margin: bool, coefficient: float | None):
    from trl import RewardConfig, RewardTrainer

    rows = {"chosen": [c for c, _ in PAIRS], "rejected": [r for _, r in PAIRS]}
    if margin:
        rows["margin"] = MARGINS
    args = RewardConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")), report_to=[], bf16=False, use_cpu=True,
        activation_checkpointing=False, center_rewards_coefficient=coefficient, max_length=128,
        per_device_train_batch_size=len(PAIRS), disable_tqdm=True, save_strategy="no",
    )
    return RewardTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_dict(rows), processing_class=tokenizer
    )


def _trl_batch(trainer) -> dict:
    """TRL's own collator on its own prepared dataset, in order (the dataloader would shuffle)."""
    return trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])


@pytest.mark.parametrize("margin", [False, True], ids=["no-margin", "margin"])
@pytest.mark.parametrize("coefficient", [None, COEFFICIENT], ids=["no-centering", "centering"])
def test_loss_and_metrics_match_trl(model, tokenizer, tmp_path_factory, margin, coefficient):
    trainer = _trainer(model, tokenizer, tmp_path_factory, margin=margin, coefficient=coefficient)
    batch = _trl_batch(trainer)
    assert ("margin" in batch) is margin
    trainer.model.train()  # compute_loss logs under "train" while the model is in training mode
    with torch.no_grad():
        trl_loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    chosen, rejected = outputs.logits.squeeze(-1).chunk(2)

    ours = reward_loss(chosen, rejected, margin=batch.get("margin"), center_rewards_coefficient=coefficient)
    assert abs(ours.item() - trl_loss.item()) < 1e-5

    logged = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    metrics = batch_metrics(chosen, rejected)
    for name in ("accuracy", "margin", "mean_reward", "min_reward", "max_reward"):
        assert metrics[name] == pytest.approx(logged[name], abs=1e-6), name
    # The tied pair counts as wrong in both, and the batch is not all-right or all-wrong, so the
    # accuracy comparison above could have failed.
    assert chosen[3].item() == rejected[3].item()
    assert 0 < metrics["accuracy"] < 5 / 6


def test_margin_and_centering_move_the_loss(model, tokenizer, tmp_path_factory):
    """Guards the test above: margin and centering change TRL's loss by far more than 1e-5."""
    losses = {}
    for margin in (False, True):
        for coefficient in (None, COEFFICIENT):
            trainer = _trainer(model, tokenizer, tmp_path_factory, margin=margin, coefficient=coefficient)
            with torch.no_grad():
                losses[margin, coefficient] = trainer.compute_loss(trainer.model, _trl_batch(trainer)).item()
    assert abs(losses[True, None] - losses[False, None]) > 0.1
    assert abs(losses[False, COEFFICIENT] - losses[False, None]) > 0.1


def test_our_batch_is_trls_batch(model, tokenizer, tmp_path_factory):
    """TRL appends EOS to plain text, puts all chosen rows before all rejected ones and pads right
    with the pad token: building that ourselves gives the same tensors, and the same rewards."""
    trainer = _trainer(model, tokenizer, tmp_path_factory, margin=False, coefficient=None)
    trl_batch = _trl_batch(trainer)

    ids = [tokenizer(text + EOS)["input_ids"] for text in [c for c, _ in PAIRS] + [r for _, r in PAIRS]]
    width = max(map(len, ids))
    input_ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids])
    attention_mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    assert all(row[-1] == tokenizer.eos_token_id for row in ids)
    assert torch.equal(trl_batch["input_ids"], input_ids)
    assert torch.equal(trl_batch["attention_mask"], attention_mask)

    with torch.no_grad():
        rewards = model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1)
        trl_loss = trainer.compute_loss(trainer.model, dict(trl_batch))
    assert abs(reward_loss(*rewards.chunk(2)).item() - trl_loss.item()) < 1e-5


# Properties -----------------------------------------------------------------------------------

_reward = st.floats(min_value=-50, max_value=50, allow_nan=False)
_rewards = st.lists(_reward, min_size=1, max_size=16)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@settings(deadline=None, max_examples=60)
@given(_rewards)
def test_equal_rewards_cost_log_2(values):
    loss = reward_loss(_t(values), _t(values))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-12)


@settings(deadline=None, max_examples=60)
@given(st.floats(-20, 20), st.floats(1e-3, 20), _reward)
def test_loss_decreases_as_chosen_pulls_ahead(d, step, base):
    """One pair: the loss only depends on r_c - r_r, and falls strictly as that grows."""
    lower = reward_loss(_t([base + d]), _t([base]))
    higher = reward_loss(_t([base + d + step]), _t([base]))
    assert higher.item() < lower.item()
    shifted = reward_loss(_t([d]), _t([0.0]))
    assert lower.item() == pytest.approx(shifted.item(), rel=1e-9, abs=1e-12)


@settings(deadline=None, max_examples=60)
@given(st.data(), st.floats(0, 10))
def test_centering_term_is_added_exactly(data, coefficient):
    chosen = data.draw(_rewards)
    rejected = data.draw(st.lists(_reward, min_size=len(chosen), max_size=len(chosen)))
    c, r = _t(chosen), _t(rejected)
    plain = reward_loss(c, r)
    centred = reward_loss(c, r, center_rewards_coefficient=coefficient)
    expected = coefficient * sum((a + b) ** 2 for a, b in zip(chosen, rejected)) / len(chosen)
    assert (centred - plain).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert reward_loss(c, r, center_rewards_coefficient=0.0).item() == plain.item()


@settings(deadline=None, max_examples=60)
@given(st.data())
def test_margin_is_subtracted_from_the_difference(data):
    chosen = data.draw(_rewards)
    n = len(chosen)
    rejected = data.draw(st.lists(_reward, min_size=n, max_size=n))
    margin = data.draw(st.lists(st.floats(-5, 5), min_size=n, max_size=n))
    with_margin = reward_loss(_t(chosen), _t(rejected), margin=_t(margin))
    moved = reward_loss(_t(chosen) - _t(margin), _t(rejected))
    assert with_margin.item() == pytest.approx(moved.item(), rel=1e-9, abs=1e-12)


def test_column_rewards_line_up_with_a_flat_margin():
    """(B, 1) rewards straight from a one-label head with a (B,) margin must not broadcast to (B, B)."""
    chosen, rejected, margin = _t([[1.0], [2.0], [0.0]]), _t([[0.0], [3.0], [0.0]]), _t([1.0, 0.0, -2.0])
    flat = reward_loss(chosen.squeeze(-1), rejected.squeeze(-1), margin=margin)
    assert reward_loss(chosen, rejected, margin=margin).item() == pytest.approx(flat.item(), abs=1e-12)


def test_metrics_by_hand():
    metrics = batch_metrics(torch.tensor([2.0, 1.0, 0.5, -1.0]), torch.tensor([1.0, 1.0, 1.5, -3.0]))
    assert metrics == pytest.approx(
        {"accuracy": 0.5, "margin": 0.5, "mean_reward": 0.375, "min_reward": -3.0, "max_reward": 2.0}
    )


def test_mismatched_or_empty_batches_are_refused():
    with pytest.raises(ValueError, match="shape"):
        reward_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="at least one"):
        reward_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="shape"):
        batch_metrics(torch.zeros(3), torch.zeros(3, 1))
