"""Finding and loading local models safely; the demo model."""

import hashlib
import json
import subprocess
import sys

import pytest

from rlhf_workbench.core.models import (
    DEMO_MODEL_SPEC,
    ModelError,
    build_demo_model,
    discover_models,
    ensure_demo_model,
    load_reward_model,
    resolve_model,
)

TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 400}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_gpt2_without_pad(tmp_path_factory):
    """A GPT-2-shaped causal LM whose tokenizer has an end-of-text token but no pad token."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("gpt2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["the cat sat on the mat", "a dog ran far away"], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    assert tokenizer.pad_token is None
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_demo_model_is_built_once_atomically_and_reused(workbench_home):
    folder = ensure_demo_model()
    assert folder.parent == workbench_home / "models"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_demo_model() == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == DEMO_MODEL_SPEC["hidden_size"]
    assert config["num_hidden_layers"] == DEMO_MODEL_SPEC["num_hidden_layers"]
    assert resolve_model("demo") == folder


def test_the_demo_model_is_deterministic(tmp_path):
    one, two = build_demo_model(tmp_path / "one", TINY), build_demo_model(tmp_path / "two", TINY)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(one / name) == _digest(two / name), name


def test_a_causal_lm_loads_with_a_scalar_head_and_the_demo_chat_template(tmp_path):
    folder = build_demo_model(tmp_path / "tiny", TINY)
    model, tokenizer = load_reward_model(folder)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.num_labels == 1 and model.score.out_features == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids("<|pad|>")
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], tokenize=False
    )
    assert text == "User: Hi\n\nAssistant: Hello."


def test_a_tokenizer_without_pad_pads_with_eos_and_padding_does_not_change_scores(tiny_gpt2_without_pad):
    import torch

    from rlhf_workbench.core.reward.evaluate import score_with

    model, tokenizer = load_reward_model(tiny_gpt2_without_pad)
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    assert tokenizer.pad_token == tokenizer.eos_token
    assert model.config.pad_token_id == tokenizer.eos_token_id
    short, long = "the cat", "a dog ran far away from the mat"
    alone = score_with(model, tokenizer, [short], max_length=64, batch_size=1, device=torch.device("cpu"))
    padded = score_with(model, tokenizer, [short, long], max_length=64, batch_size=2, device=torch.device("cpu"))
    assert alone[0] == pytest.approx(padded[0], abs=1e-5)


def test_pickle_weights_are_refused_with_the_reason_and_the_way_out(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "pytorch_model.bin").write_bytes(b"not even looked at")
    with pytest.raises(ModelError) as err:
        load_reward_model(folder)
    message = str(err.value)
    assert "pytorch_model.bin" in message and "pickle" in message and "run any code" in message
    assert "save_pretrained" in message and "safe_serialization=True" in message


def test_remote_code_never_runs_unless_asked_for(tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "custom_thing", "auto_map": {"AutoConfig": "configuration_x.XConfig"}}
    ))
    (folder / "configuration_x.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="trust_remote_code"):
        load_reward_model(folder)
    assert not marker.exists()


def test_discovery_finds_the_cache_the_project_checkpoints_and_the_demo(tmp_path, monkeypatch, workbench_home):
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-rm" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    (cache / "models--acme--tiny-rm" / "refs").mkdir()
    (cache / "models--acme--tiny-rm" / "refs" / "main").write_text("abc123")
    (cache / "models--acme--empty" / "snapshots" / "x").mkdir(parents=True)  # no config.json: skipped
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    project = tmp_path / "proj"
    best = project / "runs" / "rm-1" / "checkpoints" / "best"
    best.mkdir(parents=True)
    (best / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))

    found = {(e.name, e.source): e for e in discover_models(project)}
    assert ("demo", "demo") in found
    assert found[("acme/tiny-rm", "hf-cache")].path == snapshot
    assert found[("acme/tiny-rm", "hf-cache")].architecture == "LlamaForSequenceClassification"
    assert found[("rm-1/best", "checkpoint")].is_adapter
    assert not any(name == "acme/empty" for name, _ in found)
    assert resolve_model("acme/tiny-rm") == snapshot
    assert resolve_model(project / "runs" / "rm-1") == best
    with pytest.raises(ModelError, match="rlhf-workbench download acme/missing"):
        resolve_model("acme/missing")
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model(tmp_path / "nowhere")


def test_configs_methods_models_and_data_load_without_torch():
    code = (
        "import sys\n"
        "import rlhf_workbench.core.methods, rlhf_workbench.core.models, rlhf_workbench.core.training.pairs\n"
        "import rlhf_workbench.core.training.text, rlhf_workbench.core.training.run_models\n"
        "import rlhf_workbench.core.runs.child, rlhf_workbench.core.runs.torchrun, rlhf_workbench.core.runs.terminal\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
