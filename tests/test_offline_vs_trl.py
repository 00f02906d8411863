"""Our DPO loss and figures against TRL 1.16's DPOTrainer, on one fixed batch through real models.

Two real tiny Llamas (a reference and a policy that moved away from it) score the same batch of
pairs twice:

- ours: DPOObjective as training uses it: the reference's log-probs from `reference_logprobs`, the
  policy's through ResponseLogits (the head on the response positions only) and
  `sequence_logprobs`, the loss of `loss_type` (+ sft_weight x chosen_nll), the figures of
  `pair_figures`;
- TRL's: tests/trl_new_dpo.py, in a process of its own with TRL 1.16 first on the path, loads the
  same two model folders, gives them TRL's fused LM head (`add_fused_lm_head`) and runs
  `DPOTrainer._compute_loss` on the batch as our collate laid it out (chosen rows, then rejected;
  right padding; completion_mask = our targets).

Each of sigmoid, ipo and robust (label smoothing 0.1), and sigmoid with sft_weight against TRL's
loss_type ["sigmoid", "sft"] with loss_weights [1, w], must give the same loss, rewards/chosen,
rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen and logps/rejected within
1e-5. (cDPO, sigmoid with label smoothing, is not in TRL 1.16: tests/test_offline_losses.py checks
it by hand.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlhf_workbench.core.models import build_demo_model
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.offline.data import collate
from rlhf_workbench.core.offline.losses import token_logprobs
from rlhf_workbench.core.offline.train import DPOObjective, ResponseLogits, _shared_pairs, sequence_logprobs
from rlhf_workbench.core.training.policy import load_policy

TRL_NEW = "1.16.0"
HERE = Path(__file__).resolve().parent
TRL_FOLDER = Path(sys.prefix) / f"trl-{TRL_NEW}"
SPEC = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "vocab_size": 400}
FIGURES = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected")
# Prompts and responses of different lengths, so padding and the per-token averages of ipo matter.
PAIRS = [
    ("What is 2 + 2?", "2 + 2 = 4.", "2 + 2 = 5, I think, but do check it yourself."),
    ("Please explain bees to me.", "Sure! Bees make honey from flowers. I hope this helps.", "Ugh, fine. Bees make honey."),
    ("Tell me about the sea.", "The sea is salty.", "Mountains are tall and cold, and snow sits on them."),
    ("What is 7 + 5?", "7 + 5 = 12.", "7 + 5 = 13."),
    ("Say something kind.", "You are doing well, and I am glad you asked.", "No."),
    ("Name a colour.", "Blue.", "Blue is a colour, and so are red and green."),
]

pytestmark = pytest.mark.slow  # a process of its own that imports TRL (seconds)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(policy folder, reference folder): a random tiny Llama with sharper logits than its default
    initialisation gives (so log-probs differ between responses), and a copy of it moved by noise."""
    root = tmp_path_factory.mktemp("dpo-vs-trl")
    reference_dir = build_demo_model(root / "reference", SPEC)
    model, tokenizer = load_policy(reference_dir)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.save_pretrained(reference_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.03)
    policy_dir = root / "policy"
    model.save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)
    return policy_dir, reference_dir


def _config(**settings) -> OfflineConfig:
    return OfflineConfig(method="dpo", policy="unused", max_length=64, batch_size=len(PAIRS), device="cpu",
                         **settings).validate()


def _ours(models, config: OfflineConfig):
    """Our loss and figures of the whole batch, as a training step computes them."""
    policy_dir, reference_dir = models
    policy, tokenizer = load_policy(policy_dir)
    reference, _ = load_policy(reference_dir)
    objective = DPOObjective(reference, tokenizer, PAIRS, [], config, torch.device("cpu"), None, lambda e: None)
    result = objective.forward(objective.wrap(policy), list(range(len(PAIRS))))  # as the loop calls it
    return float(result.loss.detach()), {k: float(v) for k, v in result.figures.items()}, objective, policy


@pytest.fixture(scope="module")
def batch(models):
    """The batch as DPOTrainer's collator lays it out, made by our encode + collate."""
    _, _, objective, _ = _ours(models, _config())
    rows = [c for c, _ in objective.train_enc] + [r for _, r in objective.train_enc]
    batch = collate(rows, objective.pad_id)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "completion_mask": batch["targets"].long(), "targets": batch["targets"]}


@pytest.fixture(scope="module")
def trl_dpo(models, batch, tmp_path_factory):
    if not (TRL_FOLDER / "trl").is_dir():
        pytest.fail(f"TRL {TRL_NEW} is not in {TRL_FOLDER}: `make test` installs it there")
    policy_dir, reference_dir = models
    root = tmp_path_factory.mktemp("trl-dpo")
    torch.save({k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}, root / "batch.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TRL_FOLDER), str(HERE)]), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(HERE / "trl_new_dpo.py"), str(root / "batch.pt"), str(policy_dir),
                             str(reference_dir), str(root / "out")], capture_output=True, text=True, env=env,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["trl"] == TRL_NEW
    return out


CASES = {
    "sigmoid": dict(loss_type="sigmoid", sft_weight=0.0),
    "ipo": dict(loss_type="ipo", sft_weight=0.0),
    "robust": dict(loss_type="robust", label_smoothing=0.1, sft_weight=0.0),
    "sigmoid+sft": dict(loss_type="sigmoid", sft_weight=0.7),
}


@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_figures_match_trl(models, trl_dpo, case):
    theirs = trl_dpo["cases"][case]
    config = _config(beta=theirs["beta"], **CASES[case])
    assert config.label_smoothing == theirs["label_smoothing"]  # the two sides run the same settings
    loss, figures, _, _ = _ours(models, config)
    assert loss == pytest.approx(theirs["loss"], abs=1e-5)
    for name in FIGURES:
        assert figures[name] == pytest.approx(theirs["figures"][name], abs=1e-5), name


def test_the_batch_tells_the_cases_apart(trl_dpo):
    """Otherwise a loss type mixed up with another could pass: the four losses differ, the rewards
    are not all zero, and the accuracy is neither 0 nor 1 (some pairs each way)."""
    losses = [trl_dpo["cases"][c]["loss"] for c in CASES]
    assert len({round(v, 4) for v in losses}) == len(CASES)
    figures = trl_dpo["cases"]["sigmoid"]["figures"]
    assert 0 < figures["rewards/accuracies"] < 1
    assert abs(figures["rewards/margins"]) > 1e-3


def test_sequence_logprobs_match_trls_fused_head(models, trl_dpo):
    """Each sequence's summed response log-prob, the reference's and the policy's, equals TRL's
    fused head's: with each pair's prompt computed once (as training does here) and without."""
    _, _, objective, policy = _ours(models, _config())
    reference = torch.cat([objective.reference["train_chosen"], objective.reference["train_rejected"]])
    # Sums of ~20 log-probs of ~-9 each: float32 rounds them to ~1e-5, so relative.
    assert reference.tolist() == pytest.approx(trl_dpo["reference_logps"], rel=1e-6, abs=1e-5)
    rows = [c for c, _ in objective.train_enc] + [r for _, r in objective.train_enc]
    assert _shared_pairs(rows, objective.pad_id) is not None  # this batch takes the shared-prompt path
    net = ResponseLogits(policy)
    for share in (True, False):
        with torch.no_grad():
            logps, counts, _ = sequence_logprobs(net, rows, objective.pad_id, "fp32", torch.device("cpu"), pairs=True,
                                                 share=share)
        assert logps.tolist() == pytest.approx(trl_dpo["policy_logps"], rel=1e-6, abs=1e-5), share
        assert counts.tolist() == [len(ids) - start for ids, start in rows]
    assert logps.tolist() != pytest.approx(reference.tolist(), abs=1e-3)  # the policy moved


def test_response_logits_equal_the_full_forwards_logits(models, batch):
    """The head on the response positions only gives the log-probs the whole forward's logits give."""
    policy_dir, _ = models
    policy, _ = load_policy(policy_dir)
    net = ResponseLogits(policy)
    assert net.split is not None  # the backbone + head path, not the full-forward fallback
    plain = {k: batch[k] for k in ("input_ids", "attention_mask", "targets")}
    with torch.no_grad():
        logits, wanted, rows = net(plain)
        full = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    predicting = batch["targets"][:, 1:]
    expected_logits = full[:, :-1][predicting]
    assert logits.shape == expected_logits.shape == (int(batch["targets"].sum()), full.shape[-1])
    assert torch.equal(wanted, batch["input_ids"][:, 1:][predicting])
    assert torch.equal(rows, predicting.nonzero()[:, 0])
    # By hand: log-softmax of the full logits at each response token.
    expected = torch.log_softmax(expected_logits, -1).gather(1, wanted[:, None])[:, 0]
    assert torch.allclose(token_logprobs(logits, wanted), expected, atol=1e-5)
