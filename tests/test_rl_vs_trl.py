"""Our RLOO and GRPO losses against TRL 1.16's own loss computations, on one fixed batch.

The same log-probs (the policy's, the sampling policy's, the reference's), the same completion mask
and the same advantages go to both: ours through core/rl/group.py as the update uses it, TRL's
through `GRPOTrainer._compute_loss` (each loss_type: grpo, dr_grpo, dapo) and
`RLOOTrainer._compute_loss`, run by tests/trl_new_losses.py in a process of its own with TRL 1.16
on its path (`make test` installs it into .venv/trl-1.16.0 beside the pinned 1.12).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlhf_workbench.core.rl import group as grp

TRL_NEW = "1.16.0"
HERE = Path(__file__).resolve().parent
TRL_FOLDER = Path(sys.prefix) / f"trl-{TRL_NEW}"
SETTINGS = {"beta": 0.04, "epsilon": 0.2, "epsilon_high": 0.28, "max_completion_length": 8}

pytestmark = pytest.mark.slow  # a process of its own that imports TRL (seconds)


@pytest.fixture(scope="module")
def batch():
    """Two prompts x four responses of up to 6 tokens, with log-probs that moved enough for the clip
    to act on some tokens, and group advantages from RLOO's baseline."""
    g = torch.Generator().manual_seed(0)
    n, width = 8, 6
    lengths = torch.tensor([6, 3, 5, 1, 4, 6, 2, 5])
    mask = torch.arange(width)[None, :] < lengths[:, None]
    old = -torch.rand((n, width), generator=g) * 3
    logprobs = old + torch.randn((n, width), generator=g) * 0.3
    ref = old + torch.randn((n, width), generator=g) * 0.5
    scores = torch.randn(n, generator=g)
    advantages = grp.rloo_advantages(scores, 4)
    return {"logprobs": logprobs, "old_logprobs": old, "ref_logprobs": ref, "mask": mask,
            "advantages": advantages, "settings": SETTINGS}


@pytest.fixture(scope="module")
def trl_losses(batch, tmp_path_factory):
    if not (TRL_FOLDER / "trl").is_dir():
        pytest.fail(f"TRL {TRL_NEW} is not in {TRL_FOLDER}: `make test` installs it there")
    path = tmp_path_factory.mktemp("batch") / "batch.pt"
    torch.save(batch, path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TRL_FOLDER), str(HERE)])}
    result = subprocess.run([sys.executable, str(HERE / "trl_new_losses.py"), str(path)], capture_output=True,
                            text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["trl"] == TRL_NEW
    return out


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_grpo_loss_matches_trl(batch, trl_losses, loss_type):
    settings = batch["settings"]
    mask = batch["mask"]
    clipped, kl = grp.grpo_token_loss(
        batch["logprobs"], batch["old_logprobs"], batch["advantages"], ref_logprobs=batch["ref_logprobs"],
        beta=settings["beta"], epsilon=settings["epsilon"], epsilon_high=settings["epsilon_high"])
    ours = grp.grpo_reduce(clipped.loss, mask, loss_type, max_new_tokens=settings["max_completion_length"],
                           batch_tokens=float(mask.sum()))
    if loss_type != "dapo":
        ours = ours / len(mask)  # over the batch's responses, as the update divides a microbatch's share
    theirs = trl_losses["grpo"][loss_type]
    assert float(ours) == pytest.approx(theirs["loss"], abs=1e-5)
    # The clip figures too: TRL's region share over real tokens is what we report as policy/clipfrac_avg.
    region = ((clipped.low_clipped | clipped.high_clipped) & mask).sum() / mask.sum()
    assert float(region) == pytest.approx(theirs["figures"]["clip_ratio/region_mean"], abs=1e-6)
    assert 0 < float(region) < 1  # the batch exercises the clip, on some tokens and not others
    assert float((kl * mask).sum() / mask.sum()) == pytest.approx(theirs["figures"]["kl"], abs=1e-6)


def test_rloo_loss_matches_trl(batch, trl_losses):
    settings = batch["settings"]
    clipped = grp.rloo_sequence_loss(batch["logprobs"], batch["old_logprobs"], batch["advantages"], batch["mask"],
                                     epsilon=settings["epsilon"], epsilon_high=settings["epsilon_high"])
    assert float(clipped.loss.mean()) == pytest.approx(trl_losses["rloo"]["loss"], abs=1e-5)
    region = (clipped.low_clipped | clipped.high_clipped).float().mean()
    assert float(region) == pytest.approx(trl_losses["rloo"]["figures"]["clip_ratio/region_mean"], abs=1e-6)


def test_the_three_normalisations_differ_on_this_batch(trl_losses):
    """Otherwise the parametrised test could not tell them apart."""
    losses = {name: trl_losses["grpo"][name]["loss"] for name in ("grpo", "dr_grpo", "dapo")}
    assert len({round(v, 6) for v in losses.values()}) == 3
