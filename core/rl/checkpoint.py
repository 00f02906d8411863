"""RL checkpoints: the reward-model checkpoint format with the policy (and PPO's value model) in it.

    run_dir/checkpoints/
        step-000025/        (the step is the update)
            policy/         a transformers causal-LM folder (a peft adapter folder with LoRA) + tokenizer
            value/          PPO's value model (sequence classification, one output)
            optimizer.safetensors, rng_state.safetensors, trainer_state.json
        last -> step-000025

Written whole or not at all, and pruned, exactly as reward-model checkpoints are (see
core/training/checkpoints.py, whose machinery this reuses). `policy/` loads anywhere a causal LM
does: as the policy of another PPO run, in the Compare-with-reference step, or outside the app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import check_model_files, quiet_transformers
from ..training import checkpoints as base
from ..training.policy import POLICY_DIR
from .models import VALUE_DIR, RLModels


def save(run_dir: Path, models: RLModels, *, optimizer, scheduler, scaler, state: dict[str, Any], keep_last: int) -> Path:
    def write_weights(folder: Path) -> None:
        with quiet_transformers():
            models.policy.save_pretrained(folder / POLICY_DIR)
            if models.value is not None:
                models.value.save_pretrained(folder / VALUE_DIR)
        models.tokenizer.save_pretrained(folder / POLICY_DIR)
        if models.value is not None:
            models.tokenizer.save_pretrained(folder / VALUE_DIR)

    return base.save_checkpoint(
        run_dir, write_weights=write_weights, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        state=state, best=False, keep_last=keep_last,
    )


def restore(folder: Path, models: RLModels, *, optimizer, scheduler, scaler) -> dict[str, Any]:
    """Loads the models' weights, the optimizer, scheduler, scaler and every RNG; returns the state."""
    check_model_files(folder)  # policy/ and value/ too: a damaged file is named before anything loads
    base.restore_weights(models.policy, folder / POLICY_DIR)
    if models.value is not None:
        base.restore_weights(models.value, folder / VALUE_DIR)
    return base.restore(folder, model=None, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
