"""TRL 1.16's own RLOO and GRPO loss computations on a fixed batch, for tests/test_rl_vs_trl.py.

Run in a process of its own with TRL 1.16 first on the path (the venv pins TRL 1.12 for the
reward-model and PPO comparisons; one process imports one `trl`):

    python trl_new_losses.py BATCH.pt  ->  one JSON object on stdout

BATCH.pt holds the batch as tensors: the policy's per-token log-probs, the sampling policy's and the
reference's, the completion mask and the advantages. TRL's `_compute_loss` is called as it is, on a
stand-in for the trainer that hands it those log-probs instead of running a model (its
`_get_per_token_logps_and_entropies`); everything else is TRL's code.
"""

from __future__ import annotations

import json
import sys
import types
from collections import defaultdict

import torch
import trl
from trl import GRPOTrainer, RLOOTrainer


class _Accelerator:
    """One process: gathering and reducing change nothing."""

    num_processes = 1
    sync_gradients = True

    def gather(self, tensor):
        return tensor

    gather_for_metrics = gather

    def reduce(self, tensor, reduction="sum"):
        return tensor


def _trainer(logprobs: torch.Tensor, **attrs):
    metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    stand_in = types.SimpleNamespace(
        accelerator=_Accelerator(), model=types.SimpleNamespace(training=True), _metrics=metrics,
        aux_loss_enabled=False, current_gradient_accumulation_steps=1,
        _get_per_token_logps_and_entropies=lambda *a, **k: (logprobs, torch.zeros_like(logprobs), None),
        **attrs,
    )
    return stand_in, metrics


def grpo_loss(batch, loss_type: str, beta: float, epsilon: float, epsilon_high: float, max_completion_length: int):
    args = types.SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1)
    trainer, metrics = _trainer(
        batch["logprobs"], args=args, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        importance_sampling_level="token", beta=beta, loss_type=loss_type, epsilon_low=epsilon,
        epsilon_high=epsilon_high, use_vllm=False, vllm_importance_sampling_correction=False,
        max_completion_length=max_completion_length, _entropy_bonus_enabled=False,
    )
    n, width = batch["mask"].shape
    inputs = {
        "prompt_ids": torch.zeros((n, 1), dtype=torch.long), "prompt_mask": torch.ones((n, 1), dtype=torch.long),
        "completion_ids": torch.zeros((n, width), dtype=torch.long), "completion_mask": batch["mask"].long(),
        "advantages": batch["advantages"], "old_per_token_logps": batch["old_logprobs"],
        "ref_per_token_logps": batch["ref_logprobs"], "num_items_in_batch": batch["mask"].sum(),
    }
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    return float(loss), {name: values[-1] for name, values in metrics["train"].items()}


def rloo_loss(batch, epsilon: float, epsilon_high: float):
    trainer, metrics = _trainer(batch["logprobs"], epsilon_low=epsilon, epsilon_high=epsilon_high)
    n, width = batch["mask"].shape
    mask = batch["mask"].long()
    inputs = {
        "prompt_ids": torch.zeros((n, 1), dtype=torch.long), "prompt_mask": torch.ones((n, 1), dtype=torch.long),
        "completion_ids": torch.zeros((n, width), dtype=torch.long), "completion_mask": mask,
        "advantages": batch["advantages"], "old_logps": (batch["old_logprobs"] * mask).sum(1),
    }
    loss = RLOOTrainer._compute_loss(trainer, None, inputs)
    return float(loss), {name: values[-1] for name, values in metrics["train"].items()}


def main() -> None:
    batch = torch.load(sys.argv[1])
    settings = batch["settings"]
    out = {"trl": trl.__version__, "grpo": {}, "rloo": {}}
    for loss_type in ("grpo", "dr_grpo", "dapo"):
        loss, figures = grpo_loss(batch, loss_type, settings["beta"], settings["epsilon"], settings["epsilon_high"],
                                  settings["max_completion_length"])
        out["grpo"][loss_type] = {"loss": loss, "figures": figures}
    loss, figures = rloo_loss(batch, settings["epsilon"], settings["epsilon_high"])
    out["rloo"] = {"loss": loss, "figures": figures}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
