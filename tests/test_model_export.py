"""Export a model to use elsewhere: a LoRA policy and a LoRA reward model merged into plain
`transformers` folders that load with from_pretrained and compute what the adapters computed."""

from __future__ import annotations

import pytest
import torch

from rlhf_workbench.core.errors import WorkbenchError
from rlhf_workbench.core.model_export import export_model, kind_of
from rlhf_workbench.core.models import LoraSettings, demo_model_path, load_reward_model
from rlhf_workbench.core.training.policy import load_policy, with_new_lora

pytestmark = pytest.mark.usefixtures("demo_models")
TEXTS = ["What is 2 + 2?", "Tell me about bees, please."]


def _nudge_adapters(model) -> None:
    """LoRA's B starts at zero (the adapter adds nothing): give it weights, as training would."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def _adapter_policy(tmp_path):
    policy, tokenizer = load_policy("demo")
    model = with_new_lora(policy, LoraSettings(r=4))
    _nudge_adapters(model)
    folder = tmp_path / "policy-adapter"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model.eval(), tokenizer


def _logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(**tokenizer(t, return_tensors="pt")).logits.reshape(-1) for t in TEXTS])


def test_a_lora_policy_becomes_a_plain_folder_that_computes_what_the_adapter_did(tmp_path):
    from transformers import AutoModelForCausalLM

    folder, adapter_model, tokenizer = _adapter_policy(tmp_path)
    assert kind_of(folder) == "policy"
    result = export_model(folder, tmp_path / "out")
    out = tmp_path / "out"
    assert result["kind"] == "policy" and result["merged"] and result["max_difference"] < 1e-4
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert (out / "tokenizer.json").is_file()
    plain = AutoModelForCausalLM.from_pretrained(out).eval()  # what a script elsewhere does
    torch.testing.assert_close(_logits(plain, tokenizer), _logits(adapter_model, tokenizer), rtol=1e-4, atol=1e-4)
    base, _ = load_policy("demo")
    assert not torch.allclose(_logits(plain, tokenizer), _logits(base.eval(), tokenizer), atol=1e-3)  # the adapter is in it
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial folder left


def test_a_lora_reward_model_merges_with_its_head(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, tokenizer = load_reward_model(str(demo_model_path()), lora=LoraSettings(r=4))
    _nudge_adapters(model)
    folder = tmp_path / "rm-adapter"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert kind_of(folder) == "reward"
    result = export_model(folder, tmp_path / "rm")
    assert result["kind"] == "reward" and result["merged"]
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm").eval()
    torch.testing.assert_close(_logits(plain, tokenizer), _logits(model.eval(), tokenizer), rtol=1e-4, atol=1e-4)


def test_half_precision_a_plain_model_and_what_is_refused(tmp_path, capsys):
    from rlhf_workbench.core.cli import main

    folder, _, _ = _adapter_policy(tmp_path)
    result = export_model(folder, tmp_path / "bf16", dtype="bf16")
    assert result["dtype"] == "bf16"
    from safetensors import safe_open

    with safe_open(str(tmp_path / "bf16" / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.bfloat16}  # noqa: SIM118 (a safe_open is no dict)
    # A plain folder exports as it is (nothing to merge).
    plain = export_model("demo", tmp_path / "plain")
    assert plain["kind"] == "policy" and not plain["merged"] and plain["max_difference"] == 0.0

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(WorkbenchError, match="already exists and is not an empty folder"):
        export_model(folder, taken)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    with pytest.raises(WorkbenchError, match="dtype"):
        export_model(folder, tmp_path / "x", dtype="int8")

    assert main(["export-model", str(folder), str(tmp_path / "cli")]) == 0
    assert "policy model, LoRA adapter merged" in capsys.readouterr().out
    assert main(["export-model", str(folder), str(taken)]) == 1
