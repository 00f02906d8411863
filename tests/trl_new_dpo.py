"""TRL 1.16's own DPO loss computation on a fixed batch, for tests/test_offline_vs_trl.py.

Run in a process of its own with TRL 1.16 first on the path (the venv pins TRL 1.12 for the
reward-model and PPO comparisons; one process imports one `trl`):

    python trl_new_dpo.py BATCH.pt POLICY_DIR REFERENCE_DIR OUT_DIR  ->  one JSON object on stdout

BATCH.pt holds the batch as DPOTrainer's collator lays it out (chosen rows first, then rejected,
right-padded): input_ids, attention_mask, completion_mask. The policy and the reference are real
tiny Llama folders, loaded with transformers and given TRL's fused LM head
(`trl.trainer.utils.add_fused_lm_head`, with the outputs DPOTrainer.__init__ asks for), so the
log-probabilities are TRL's own, computed from the models. `DPOTrainer._compute_loss` then runs as
it is on a stand-in for the trainer: the attributes DPOTrainer.__init__ sets from a real DPOConfig
(beta, loss types and weights, label smoothing...), an accelerator of one process, and the two
models, the reference computed by TRL (precompute_ref_log_probs off). Everything else is TRL's code.
"""

from __future__ import annotations

import json
import sys
import types
from collections import defaultdict

import torch
import trl
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer
from trl.trainer.utils import add_fused_lm_head

# (name, TRL's loss_type, loss_weights, label_smoothing): what tests/test_offline_vs_trl.py compares.
CASES = [
    ("sigmoid", ["sigmoid"], None, 0.0),
    ("ipo", ["ipo"], None, 0.0),
    ("robust", ["robust"], None, 0.1),
    ("sigmoid+sft", ["sigmoid", "sft"], [1.0, 0.7], 0.0),
]
BETA = 0.1


class _Accelerator:
    """One process: gathering changes nothing."""

    num_processes = 1
    device = torch.device("cpu")

    def gather(self, tensor):
        return tensor

    gather_for_metrics = gather


def _model(folder: str):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    # The outputs DPOTrainer.__init__ asks of the policy's fused head (no WPO weighting).
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    return model


def dpo_loss(args: DPOConfig, policy, reference, inputs) -> tuple[float, dict[str, float]]:
    metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer = types.SimpleNamespace(
        accelerator=_Accelerator(), model=policy, ref_model=reference, args=args, _metrics=metrics,
        _total_train_tokens=0, _tp_size=1, aux_loss_enabled=False,
        # As DPOTrainer.__init__ sets them from its DPOConfig:
        beta=args.beta, precompute_ref_logps=args.precompute_ref_log_probs, loss_types=args.loss_type,
        loss_weights=args.loss_weights or [1.0] * len(args.loss_type), ld_alpha=args.ld_alpha,
        f_divergence_type=args.f_divergence_type, f_alpha_divergence_coef=args.f_alpha_divergence_coef,
        label_smoothing=args.label_smoothing, use_weighting=args.use_weighting,
    )
    loss = DPOTrainer._compute_loss(trainer, policy, inputs, return_outputs=False)
    return float(loss.detach()), {name: values[-1] for name, values in metrics["train"].items()}


def main() -> None:
    batch_path, policy_dir, reference_dir, out_dir = sys.argv[1:5]
    batch = torch.load(batch_path)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "completion_mask")}
    policy, reference = _model(policy_dir), _model(reference_dir)
    policy.train()
    reference.eval()
    out = {"trl": trl.__version__, "cases": {}}
    for name, loss_type, weights, smoothing in CASES:
        args = DPOConfig(output_dir=out_dir, loss_type=loss_type, loss_weights=weights, beta=BETA,
                         label_smoothing=smoothing, precompute_ref_log_probs=False, report_to=[], use_cpu=True)
        loss, figures = dpo_loss(args, policy, reference, inputs)
        out["cases"][name] = {"loss": loss, "figures": figures, "label_smoothing": smoothing,
                              "loss_type": loss_type, "loss_weights": weights, "beta": BETA}
    # Each sequence's summed response log-prob through TRL's fused head, as _compute_loss sums them.
    labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
    with torch.no_grad():
        for key, model in (("policy_logps", policy), ("reference_logps", reference)):
            fused = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                          fused_lm_head=True, use_cache=False)
            out[key] = fused.log_probs.sum(1).tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
