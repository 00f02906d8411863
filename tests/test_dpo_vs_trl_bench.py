"""bench/dpo_vs_trl.py still runs end to end against TRL 1.16, at toy size (`--quick`).

The bench reaches into TRL 1.16's DPOTrainer (it times `_precompute_ref_logps` on the class, reads
`ref_model`, `precompute_ref_logps` and the tokenized dataset's `prompt_ids` / `chosen_ids` /
`rejected_ids`) and into our loop (it wraps `offline.train.reference_logprobs` and reads the
"training on ..." log), so a rename on either side would otherwise only show when someone runs the
bench. Here: hidden 32, 1 layer, 32 training and 8 validation pairs of at most 128 tokens, one run
per side, the two sides at once (TRL 1.16 runs in a process of its own beside the venv's 1.12);
nothing is downloaded. The figures are the shape's, not the speed's: no timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "dpo_vs_trl.py"


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("dpo_vs_trl", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.SOURCE.is_file():
        pytest.skip(f"the shared HH sample is not at {module.SOURCE}")
    if not (module.TRL_FOLDER / "trl").is_dir():
        pytest.skip(f"TRL {module.TRL_NEW} is not in {module.TRL_FOLDER} (`make test` installs it)")
    for name, value in module.OFFLINE.items():
        monkeypatch.setenv(name, value)  # main() sets them too; monkeypatch puts the old values back
    return module


@pytest.mark.slow
def test_quick_run_reports_both_sides(bench, no_network, capsys):
    bench.main(["--quick"])  # exit status 1 is a missed target: speed at toy size means nothing
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    for key in ("ratio", "cpu_ratio", "ours_pairs_per_s", "trl_pairs_per_s"):
        assert isinstance(last[key], float) and math.isfinite(last[key]) and last[key] > 0, key
    for side in ("ours", "trl"):
        assert 0.0 <= last[f"{side}_accuracy"] <= 1.0, side
        assert 0.0 <= last[f"{side}_own_accuracy"] <= 1.0, side
        assert 0.0 <= last[f"{side}_padding_share"] < 1.0, side
        assert 0.0 <= last[f"{side}_reference_padding_share"] < 1.0, side
        assert set(last["split"][side]) == set(bench.PHASES), side
        (run,) = last["runs"][side]
        assert run["steps"] == bench.QUICK_PAIRS // bench.BATCH, side
        assert run["reference_s"] > 0 and run["forward_s"] > 0 and run["backward_s"] > 0, side
        assert run["tokens"]["train"] > 0 and run["tokens"]["reference"] > 0, side
    assert last["trl_config"]["name"] == bench.DEFAULT_TRL_CONFIG
    assert last["trl_config"]["precompute_ref_log_probs"] is True
    (trl,) = last["runs"]["trl"]
    assert trl["trl_version"] == bench.TRL_NEW and trl["precomputed"] is True
    assert trl["gradient_checkpointing"] is False
    assert trl["ids_match"] is True, "TRL tokenized some pair into other ids than ours"
    assert last["problems"] == []
    assert last["train_pairs"] == bench.QUICK_PAIRS and last["val_pairs"] == 8
