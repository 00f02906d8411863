"""bench/ppo_vs_trl.py's TRL side still runs against the installed TRL, at toy size.

The bench reaches into TRL's PPO loop (it wraps `batch_generation` and `get_reward` in
trl.experimental.ppo.ppo_trainer and reads `on_step_end`), so a TRL upgrade that renames any of
those would otherwise only show when someone runs the bench. Here: hidden 32, 1 layer, 32
prompts, 2 updates of 16, in this process; nothing is downloaded.
"""

from __future__ import annotations

import os

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
              "TRL_EXPERIMENTAL_SILENCE"):
    os.environ[_name] = "1"

import importlib.util
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "ppo_vs_trl.py"


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("ppo_vs_trl", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.SOURCE.is_file():
        pytest.skip(f"the shared HH sample is not at {module.SOURCE}")
    return module


@pytest.mark.slow
def test_trl_side_reports_finite_speed_and_split(bench, no_network, tmp_path, monkeypatch):
    import torch
    from trl.experimental.ppo import ppo_trainer

    # One thread: at toy size the ops are tiny, and two threads on two busy cores wait a time slice
    # for each of them (23 s instead of 2.5 s here). The bench's load() sets the count; the session
    # gets its own back afterwards.
    monkeypatch.setattr(bench, "THREADS", 1)
    threads = torch.get_num_threads()
    real = ppo_trainer.batch_generation, ppo_trainer.get_reward
    try:
        info = bench.prepare(tmp_path, n_prompts=32, model={"hidden_size": 32, "num_hidden_layers": 1,
                                                            "num_attention_heads": 2, "num_key_value_heads": 2,
                                                            "intermediate_size": 64})
        result = bench.run_trl(tmp_path, episodes=2 * bench.BATCH)
    finally:
        torch.set_num_threads(threads)
    assert (ppo_trainer.batch_generation, ppo_trainer.get_reward) == real, "the bench left TRL patched"
    assert info["prompts"] == 32
    assert result["updates"] == 2 and result["episodes"] == 32
    assert math.isfinite(result["episodes_per_s"]) and result["episodes_per_s"] > 0
    assert all(result[k] > 0 for k in bench.PHASES)
    # TRL's default stop_token=None: every response is exactly response_length tokens.
    assert result["new_tokens"] == [bench.RESPONSE_LENGTH]
    assert result["prompts_seen"] == 32
    assert result["gradient_checkpointing"] is False
