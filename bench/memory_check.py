"""The memory estimate (core/training/memory.py) against torch.cuda.max_memory_allocated on a GPU.

    .venv/bin/python bench/memory_check.py          # on the first CUDA device; says so and exits 0 without one
    .venv/bin/python bench/memory_check.py --cpu    # the same steps on tiny shapes on the CPU (torch's profiler)

For each shape, a random Llama built from its config in float32 (the methods' master weights)
trains two steps as the methods do: forward under autocast, a loss on the logits of the response's
tokens (ResponseLogits' way), backward, gradient clipping, fused AdamW, gradients set to None.
The peak torch allocated over both steps is compared with the estimate's weights + optimizer state
+ training pass (the runtime's own memory, which the allocator does not see, left out). Weights and
AdamW's state must match exactly. Prints a table; the last line is one JSON object (`ok`: every
peak within 20%).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# hidden, layers, intermediate, heads, kv heads, vocab, batch, length, logit tokens, precision, checkpointing, lora
GPU_SHAPES = [
    (768, 12, 2048, 12, 12, 32000, 8, 512, 256, "bf16", False, False),
    (768, 12, 2048, 12, 12, 32000, 8, 512, 256, "fp32", False, False),
    (1024, 16, 2816, 16, 4, 50000, 4, 1024, 512, "bf16", True, False),
    (2048, 16, 5632, 16, 4, 32000, 8, 512, 256, "bf16", False, True),
    (896, 24, 4864, 14, 2, 151936, 4, 1024, 512, "bf16", False, False),  # Qwen2.5-0.5B's shape
]
CPU_SHAPES = [
    (64, 2, 256, 4, 4, 1024, 4, 32, 16, "fp32", False, False),
    (128, 3, 352, 8, 2, 2000, 2, 96, 48, "bf16", True, False),
    (128, 2, 344, 4, 4, 1000, 4, 48, 24, "fp32", False, True),
]


def measure(shape, device) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlhf_workbench.core.training.memory import FLOAT32, ModelShape, Pass, lora_roles, training_pass
    from rlhf_workbench.core.training.optim import adamw

    hidden, layers, inter, heads, kv, vocab, batch, length, logit_tokens, precision, ckpt, lora = shape
    config = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=inter, num_attention_heads=heads,
                         num_key_value_heads=kv, vocab_size=vocab, max_position_embeddings=max(2048, length),
                         tie_word_embeddings=False, pad_token_id=0)
    estimated = ModelShape.from_config(config.to_dict())
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device) if cuda else 0
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(device)
    trained = None
    if lora:
        from peft import LoraConfig, get_peft_model

        trained = lora_roles("auto", "llama")
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    weights = (torch.cuda.memory_allocated(device) - start) if cuda else sum(
        p.numel() * p.element_size() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    optimizer = adamw(trainable, lr=1e-5)
    ids = torch.randint(1, vocab, (batch, length), device=device)
    mask = torch.ones_like(ids)
    mask[0, : length // 4] = 0
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16

    def forward():
        with torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32"):
            backbone = model.get_base_model().model if lora else model.model
            hidden_states = backbone(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            logits = model.get_output_embeddings()(hidden_states[:, -logit_tokens - 1 : -1])
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, -logit_tokens:].flatten())

    def step():
        forward().backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if cuda:
        step()
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - start
    else:
        from bench_common import cpu_peak_bytes

        step()
        peak = cpu_peak_bytes(step) + weights + 2 * FLOAT32 * n_trainable  # the profiler sees what the step allocates
    moments = sum(t.numel() * t.element_size() for s in optimizer.state.values() for k, t in s.items() if k != "step")
    params = estimated.params() + (estimated.lora_params(16, trained) if lora else 0)
    step_bytes = training_pass(estimated, Pass(batch, length, logit_tokens), precision=precision, checkpointing=ckpt,
                               trained=trained, trainable=n_trainable).peak
    estimate = FLOAT32 * params + 2 * FLOAT32 * n_trainable + step_bytes
    return {
        "shape": f"h{hidden} L{layers} kv{kv} V{vocab} b{batch}x{length} {precision}" + (" ckpt" if ckpt else "")
        + (" lora" if lora else ""),
        "weights_exact": weights == FLOAT32 * params, "optimizer_exact": moments == 2 * FLOAT32 * n_trainable,
        "measured_gib": peak / 2**30, "estimated_gib": estimate / 2**30, "error": estimate / peak - 1,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (torch's profiler) instead")
    args = parser.parse_args(argv)
    import torch

    if args.cpu:
        device, shapes, name = torch.device("cpu"), CPU_SHAPES, "this CPU"
    elif not torch.cuda.is_available():
        print(f"no CUDA device here (torch {torch.__version__}): nothing to measure; run it on a machine with an "
              "NVIDIA GPU, or with --cpu")
        print(json.dumps({"ok": None, "device": None, "reason": "no CUDA"}))
        return 0
    else:
        device, shapes, name = torch.device("cuda"), GPU_SHAPES, torch.cuda.get_device_name(0)
    rows = [measure(shape, device) for shape in shapes]
    print(f"memory estimate vs torch on {name} (torch {torch.__version__})")
    print(f"{'shape':48} {'measured GiB':>12} {'estimated GiB':>13} {'error':>7}  weights/optimizer exact")
    for r in rows:
        print(f"{r['shape']:48} {r['measured_gib']:12.3f} {r['estimated_gib']:13.3f} {r['error']:+7.1%}  "
              f"{r['weights_exact']}/{r['optimizer_exact']}")
    ok = all(abs(r["error"]) <= 0.2 and r["weights_exact"] and r["optimizer_exact"] for r in rows)
    print(json.dumps({"ok": ok, "device": name, "torch": torch.__version__, "rows": rows}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
