"""bench/rl_vs_trl.py still runs end to end against TRL 1.16, at toy size.

The bench reaches into TRL 1.16's GRPOTrainer and RLOOTrainer (it wraps `_generate`,
`_generate_and_score_completions` and `_calculate_rewards` on the instance and reads `on_step_end`),
so a TRL or transformers upgrade that renames any of those would otherwise only show when someone
runs the bench. Here: hidden 32, 1 layer, 32 prompts, 2 updates of 64 episodes, both methods, both
sides, each side in one child process (TRL 1.16 cannot be imported beside the venv's TRL 1.12);
nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "rl_vs_trl.py"
TOY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
       "intermediate_size": 64}


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("rl_vs_trl", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.SOURCE.is_file():
        pytest.skip(f"the shared HH sample is not at {module.SOURCE}")
    if not (module.TRL_FOLDER / "trl").is_dir():
        pytest.skip(f"TRL {module.TRL_NEW} is not in {module.TRL_FOLDER} (`make test` installs it)")
    for name, value in module.ppo.OFFLINE.items():
        monkeypatch.setenv(name, value)
    return module


@pytest.mark.slow
def test_both_sides_report_finite_speed_split_and_padding(bench, no_network, tmp_path, capsys):
    episodes = 2 * bench.BATCH
    info = bench.prepare(tmp_path, episodes=episodes, model=TOY)
    assert info["prompts"] == episodes // bench.NUM_GENERATIONS
    # One thread: at toy size the ops are tiny, and two threads on two busy cores wait a time slice
    # for each of them.
    runs = {m: {} for m in bench.METHODS}
    for side in ("ours", "trl"):
        for result in bench.run_side(side, tmp_path, episodes, list(bench.METHODS), threads=1):
            runs[result["method"]][side] = [result]

    digests = set()
    for method, by_side in runs.items():
        assert set(by_side) == {"ours", "trl"}, f"{method}: a side gave no result"
        for side, (r,) in by_side.items():
            where = f"{method} {side}"
            assert r["updates"] == 2 and r["episodes"] == episodes, where
            assert math.isfinite(r["episodes_per_s"]) and r["episodes_per_s"] > 0, where
            assert math.isfinite(r["episodes_per_cpu_s"]) and r["episodes_per_cpu_s"] > 0, where
            assert all(r[k] > 0 for k in bench.PHASES), where
            # Both sides sample the full response length for every batch (EOS is rare at random init).
            assert r["new_tokens"] == [bench.RESPONSE_LENGTH], where
            assert r["prompts_seen"] == episodes, where
            assert r["gradient_checkpointing"] is False, where
            assert all(r["padding"]["tokens"][s] > 0 for s in bench.STAGES), where
            assert 0.0 <= bench.share(r["padding"]) < 1.0, where
            digests.add(r["prompts_digest"])
        trl = by_side["trl"][0]
        assert trl["trl_version"] == bench.TRL_NEW
        assert trl["micro_batch"] == bench.TRL_CONFIGS[bench.DEFAULT_TRL_CONFIG]["per_device_train_batch_size"]
        assert trl["reward_ids_match"] is True, "TRL's reward model read other ids than ours for the same text"
    assert len(digests) == 1, "the runs did not all generate from the same prompts"

    capsys.readouterr()
    bench.report(runs, {**info, "episodes": episodes}, dict.fromkeys(bench.METHODS, bench.DEFAULT_TRL_CONFIG), None)
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for method in bench.METHODS:
        assert math.isfinite(last[f"{method}_ratio"]) and last[f"{method}_ratio"] > 0
        assert last[method]["ours_eps"] > 0 and last[method]["trl_eps"] > 0
    assert last["problems"] == []
