"""The memory estimate (core/training/memory.py) against what torch measures, and what it is made of.

The estimate is arithmetic on config.json; here tiny random Llamas are built from such configs and
run for real on this CPU: parameters, gradients and AdamW's state must match exactly, and the peak
of a forward + backward (torch's profiler: every allocation and free on the CPU, summed in time
order) within 20% of the estimate's gradients + activations. bench/memory_check.py does the same on
a GPU with torch.cuda.max_memory_allocated.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_workbench.core.methods import METHODS
from rlhf_workbench.core.offline.config import OfflineConfig
from rlhf_workbench.core.offline.method import OFFLINE
from rlhf_workbench.core.reward.config import RewardConfig
from rlhf_workbench.core.reward.method import REWARD_MODEL
from rlhf_workbench.core.rl.config import RLConfig
from rlhf_workbench.core.rl.method import RL
from rlhf_workbench.core.training.memory import (
    GB,
    DeviceMemory,
    ModelShape,
    Pass,
    estimate_line,
    lora_roles,
    memory_check,
    model_config,
    training_pass,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_common import cpu_peak_bytes  # noqa: E402  (bench/ is no package: its folder on the path)

# (hidden, layers, intermediate, heads, kv heads, vocab, head, batch, length, logit tokens, precision, checkpointing, lora)
SHAPES = [
    (64, 2, 256, 4, 4, 1024, "lm", 4, 32, 16, "fp32", False, False),
    (128, 3, 352, 8, 2, 2000, "lm", 2, 96, 48, "fp32", True, False),
    (96, 2, 256, 6, 6, 1500, "scalar", 3, 64, 0, "bf16", False, False),
    (128, 2, 344, 4, 4, 1000, "lm", 4, 48, 24, "fp32", False, True),
    (64, 2, 172, 4, 4, 512, "lm", 8, 128, 64, "bf16", False, False),  # activations well over the weights
]


def _config(hidden, layers, intermediate, heads, kv, vocab):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=intermediate,
                       num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab,
                       max_position_embeddings=256, tie_word_embeddings=False)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"h{s[0]}-L{s[1]}-{s[6]}-b{s[7]}x{s[8]}-{s[10]}"
                         + ("-ckpt" if s[11] else "") + ("-lora" if s[12] else ""))
def test_estimate_matches_torch(shape, tmp_path):
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    hidden, layers, inter, heads, kv, vocab, head, batch, length, logit_tokens, precision, ckpt, lora = shape
    config = _config(hidden, layers, inter, heads, kv, vocab)
    config.save_pretrained(tmp_path)  # what the estimate reads: config.json alone
    estimated = ModelShape.from_config(json.loads((tmp_path / "config.json").read_text()))
    torch.manual_seed(0)
    config.pad_token_id, config.num_labels = 0, 1
    model = (LlamaForCausalLM if head == "lm" else LlamaForSequenceClassification)(config)
    assert sum(p.numel() for p in model.parameters()) == estimated.params(head)
    trained = None
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        trained = lora_roles("q_proj,v_proj", "llama")
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == estimated.lora_params(8, trained)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.randint(1, vocab, (batch, length))
    mask = torch.ones_like(ids)
    mask[0, : length // 4] = 0  # a padded row, as a batch of unequal lengths has
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward():
        """The loss as the methods compute it; what is not saved for backward is freed on return."""
        with autocast:
            if head == "scalar":
                return model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float().square().mean()
            # the loss reads logits at the response's tokens alone, as ResponseLogits does
            backbone = model.get_base_model().model if lora else model.model
            hidden_states = backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            logits = model.get_output_embeddings()(hidden_states[:, -logit_tokens - 1 : -1])
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, -logit_tokens:].flatten())

    def step():
        forward().backward()

    measured = cpu_peak_bytes(step)
    run = Pass(batch, length, logit_tokens)
    trainable = [p for p in model.parameters() if p.requires_grad]
    expected = training_pass(estimated, run, precision=precision, checkpointing=ckpt, trained=trained, head=head,
                             trainable=sum(p.numel() for p in trainable)).peak
    assert sum(p.grad.numel() * p.grad.element_size() for p in trainable) == 4 * sum(p.numel() for p in trainable)
    print(f"\n{shape}: measured {measured / 2**20:.2f} MiB, estimated {expected / 2**20:.2f} MiB "
          f"({expected / measured - 1:+.1%})")
    assert 0.8 <= expected / measured <= 1.2
    # AdamW's two moments, float32, per trainable parameter: exactly
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    optimizer.step()
    moments = sum(t.numel() * t.element_size() for s in optimizer.state.values() for k, t in s.items() if k != "step")
    assert moments == 8 * sum(p.numel() for p in trainable)


def test_lora_targets_and_configs(tmp_path):
    assert lora_roles("auto", "llama") == ("q", "v")
    assert lora_roles("all-linear", "qwen2") == ("down", "gate", "k", "o", "q", "up", "v")
    assert lora_roles("c_attn", "gpt2") == ("k", "q", "v")
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
                                                  "num_attention_heads": 14, "num_key_value_heads": 2,
                                                  "intermediate_size": 4864, "vocab_size": 151936,
                                                  "tie_word_embeddings": True}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    shape = ModelShape.from_config(model_config(str(adapter)))  # an adapter reads its base
    assert shape.kv_heads == 2 and shape.head_dim == 64 and shape.tied
    assert shape.params() == 494_032_768  # Qwen2.5-0.5B's (its q, k and v have biases, o none)
    # what save_pretrained writes leaves out the class's defaults (GPT-2: tied, biases, LayerNorm;
    # Llama: untied)
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    for config, cls in ((GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=500, n_positions=128), GPT2LMHeadModel),
                        (_config(64, 2, 160, 4, 2, 500), LlamaForCausalLM), (LlamaConfig(
                            hidden_size=64, num_hidden_layers=1, intermediate_size=128, num_attention_heads=4,
                            vocab_size=300, mlp_bias=True), LlamaForCausalLM)):
        config.save_pretrained(tmp_path / cls.__name__)
        written = json.loads((tmp_path / cls.__name__ / "config.json").read_text())
        assert ModelShape.from_config(written).params() == sum(p.numel() for p in cls(config).parameters())


def _device(gb: float) -> DeviceMemory:
    return DeviceMemory("cuda", "NVIDIA Test GPU", int(gb * GB))


@pytest.fixture
def qwen(tmp_path):
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28,
                                                    "num_attention_heads": 12, "num_key_value_heads": 2,
                                                    "intermediate_size": 8960, "vocab_size": 151936,
                                                    "tie_word_embeddings": True}))
    return str(folder)


def test_models_each_method_holds(qwen):
    """PPO holds four models, RLOO and GRPO no value model (GRPO with beta 0 no reference either);
    with LoRA the reference is the policy itself; DPO holds one model."""
    device = _device(80)

    def roles(method, config):
        found = memory_check(method, config, device=device).estimate
        return {p.role: p for p in found.parts}

    ppo = roles(RL, RLConfig(policy=qwen, reward_model=qwen))
    assert set(ppo) == {"policy", "reference", "value", "reward"}
    assert ppo["reference"].weights == ppo["policy"].weights and ppo["reference"].optimizer == 0
    assert ppo["value"].optimizer > 0 and ppo["reward"].gradients == 0
    assert set(roles(RL, RLConfig(method="rloo", policy=qwen, reward_model=qwen))) == {"policy", "reference", "reward"}
    assert set(roles(RL, RLConfig(method="grpo", beta=0.0, policy=qwen, reward_model=qwen))) == {"policy", "reward"}
    lora = roles(RL, RLConfig(policy=qwen, reward_model=qwen, lora=True))
    assert lora["reference"].weights == 0 and lora["policy"].trainable_params < lora["policy"].params / 50
    assert lora["value"].trainable_params == lora["value"].params  # LoRA is the policy's alone
    dpo = roles(OFFLINE, OfflineConfig(policy=qwen))
    assert set(dpo) == {"policy"}
    assert set(roles(REWARD_MODEL, RewardConfig(base_model=qwen))) == {"reward model"}


def test_line_and_suggestions(qwen):
    """A full fine-tune of a 1.5B model in fp32 does not fit 24 GB; each suggestion is a settings
    change with its estimate after it, and the ones offered fit."""
    config = OfflineConfig(method="sft", policy=qwen, batch_size=8, max_length=1024)
    check = memory_check(OFFLINE, config, device=_device(24))
    assert not check.fits
    assert check.line.startswith("needs about ") and "of 24.0 GB on NVIDIA Test GPU" in check.line
    assert check.suggestions
    for tip in check.suggestions:
        assert tip.estimate.fits and tip.estimate.total < check.estimate.total
        for key, value in tip.changes.items():
            assert hasattr(config, key) and getattr(config, key) != value
    lora = memory_check(OFFLINE, OfflineConfig(method="sft", policy=qwen, batch_size=8, max_length=1024, lora=True),
                        device=_device(24))
    assert not lora.fits
    changes = [tip.changes for tip in lora.suggestions]
    assert {"gradient_checkpointing": True} in changes
    # a smaller forward pass keeps the global batch: batch_size x gradient_accumulation_steps
    assert any(c.get("batch_size", 8) * c.get("gradient_accumulation_steps", 1) == 8 and "batch_size" in c for c in changes)
    roomy = memory_check(OFFLINE, config, device=_device(200))
    assert roomy.fits and not roomy.suggestions
    assert estimate_line(roomy.estimate) == roomy.line
    cpu = memory_check(REWARD_MODEL, RewardConfig(), device=DeviceMemory("cpu", "this CPU", 16 * GB))
    assert cpu.fits and cpu.line.endswith("of 16.0 GB of RAM on this CPU")


def test_every_method_estimates_its_defaults_without_torch(tmp_path):
    """The window computes the estimate: no torch in its process, and every method has one."""
    code = (
        "import sys\n"
        "from rlhf_workbench.core.methods import METHODS\n"
        "from rlhf_workbench.core.training.memory import memory_check\n"
        "for m in METHODS:\n"
        "    c = m.config(reward_model='demo') if 'reward_model' in m.config.__dataclass_fields__ else m.config()\n"
        "    r = memory_check(m, c)\n"
        "    assert r.estimate is not None, r.line\n"
        "    print(m.command, r.line)\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == len(METHODS)


def test_cli_prints_the_line_and_refuses_a_run_that_cannot_fit(make_project, tmp_path):
    """A 70B Llama's config.json (no weights: the estimate reads nothing else) cannot fit this
    machine: refused before a run is recorded, naming the changes; --force goes on to load it."""
    path = make_project("p", [("Question?", "Kind answer.", "Go away.", "t", "a", "dataset:x")])
    big = tmp_path / "llama-70b"
    big.mkdir()
    (big / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
        "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 128256, "tie_word_embeddings": False}))
    cli = [sys.executable, "-m", "rlhf_workbench.core.cli", "train-rm", str(path), "--set", f"base_model={big}"]
    refused = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert refused.stdout.startswith("memory: needs about ") and "does not fit" in refused.stdout
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: this run needs about ") and "RAM on this CPU, more than it has" in line
    assert "--force starts it anyway" in line
    from rlhf_workbench.core.project import Project

    with Project.open(path) as project:
        assert project.store.runs() == []
    forced = subprocess.run([*cli, "--force"], capture_output=True, text=True, timeout=120)
    assert forced.returncode == 1 and "memory: needs about" in forced.stdout
    assert "no model weights" in forced.stderr and "more than it has" not in forced.stderr


def test_reward_models_of_the_project_are_read_from_their_runs(make_project, qwen):
    """'latest' and a run id name a reward-model run: its checkpoint's config.json (an adapter's
    base's), or before its first checkpoint the model it started from."""
    from rlhf_workbench.core.project import Project

    path = make_project("p", [("Question?", "Kind answer.", "Go away.", "t", "a", "dataset:x")])
    small = {"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "vocab_size": 500, "tie_word_embeddings": False}
    with Project.open(path) as project:
        for run_id, status in (("reward-old", "finished"), ("reward-new", "finished"), ("reward-running", "running")):
            project.store.create_run(run_id, kind="reward", name="", config={"base_model": qwen},
                                     output_dir=f"runs/{run_id}")
            project.store.set_run_status(run_id, status)
    best = path / "runs" / "reward-new" / "checkpoints" / "best"
    best.mkdir(parents=True)
    (best / "config.json").write_text(json.dumps(small))
    device = _device(80)
    scalar = ModelShape.from_config(small).params("scalar")

    def reward_params(reward_model):
        found = memory_check(RL, RLConfig(policy=qwen, reward_model=reward_model), path, device=device).estimate
        return {p.role: p.params for p in found.parts}

    assert reward_params("latest")["reward"] == scalar and reward_params("latest")["value"] == scalar
    assert reward_params("reward-new")["reward"] == scalar
    # no checkpoint yet: the model the run started from
    assert reward_params("reward-old")["reward"] == ModelShape.from_config(json.loads(
        (Path(qwen) / "config.json").read_text())).params("scalar")
    # an adapter checkpoint reads its base
    best.joinpath("config.json").unlink()
    (best / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": qwen}))
    assert reward_params("latest")["reward"] == reward_params("reward-old")["reward"]
    missing = memory_check(RL, RLConfig(policy=qwen, reward_model="no-such-run"), path, device=device)
    assert missing.fits and missing.line.startswith("no memory estimate: reward_model: no-such-run")
