"""The memory line under Start (app/views/memory_line.py): the estimate's line, red when the run
does not fit, and a button per suggestion that emits its settings change."""

import json

from rlhf_workbench.app.views.memory_line import MemoryLine
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.offline.method import OFFLINE
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.reward.method import REWARD_MODEL
from rlhf_workbench.core.training.memory import GB, DeviceMemory, memory_check


def test_a_run_that_does_not_fit_is_red_with_one_click_changes(qtbot, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
        "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936, "tie_word_embeddings": True}))
    line = MemoryLine()
    qtbot.addWidget(line)
    config = OfflineConfig(method="sft", policy=str(tmp_path), batch_size=8, max_length=1024, lora=True)
    check = memory_check(OFFLINE, config, device=DeviceMemory("cuda", "NVIDIA GeForce RTX 4090", 24 * GB))
    line.show_check(check)
    assert not line.fits and "#c62828" in line.label.styleSheet()
    assert line.label.text() == f"Memory: {check.line}" and "on NVIDIA GeForce RTX 4090" in line.label.text()
    assert "policy" in line.label.toolTip()
    assert [b.text() for b in line.buttons] == [tip.label for tip in check.suggestions] and line.buttons
    with qtbot.waitSignal(line.change_requested) as emitted:
        line.buttons[0].click()
    assert emitted.args == [check.suggestions[0].changes]
    # applied, the change fits: the line is no longer red and offers nothing
    line.show_check(memory_check(OFFLINE, OfflineConfig(**{**config.__dict__, **check.suggestions[0].changes}),
                                 device=DeviceMemory("cuda", "NVIDIA GeForce RTX 4090", 24 * GB)))
    assert line.fits and line.label.styleSheet() == "" and line.buttons == []


def test_refresh_estimates_the_demo_on_this_machine(qtbot, workbench_home):
    line = MemoryLine()
    qtbot.addWidget(line)
    check = line.refresh(REWARD_MODEL, RewardConfig(), None)
    assert check.fits and check.estimate is not None
    assert line.label.text().startswith("Memory: needs about ") and not line.buttons
