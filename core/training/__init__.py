"""The training toolkit: what every method's loop shares, and nothing method-specific.

    method.py       TrainingMethod: what the CLI, torchrun and the app know of a method
    config.py       how a job's settings are written: documented fields, validation, TOML
    device.py       device, precision and autocast, CPU threads, peak memory
    optim.py        AdamW (fused where it can be), the learning-rate schedule, the fp16 loss scaler
    guards.py       out-of-memory and NaN stops, with the step and what to try
    checkpoints.py  atomic checkpoints: write, read, prune, best and last
    distributed.py  the same loops under torchrun (process group, shards, gathers, gradients)
    text.py         how a prompt and response become tokens (chat template or transcript, truncation)
    pairs.py        the labelled pairs preference methods train on: majority rule, the split by
                    prompt, length-grouped batches
    policy.py       finding and loading a causal-LM policy (a folder, a LoRA adapter, a run's checkpoint)
    rollout.py      sampling responses with the KV cache, and what online RL scores them with
    run_models.py   models a project's runs made ('latest' reward model, a run's checkpoint)
    console.py      a run's events as terminal lines
    memory.py       will it fit? the memory a run needs, from config.json, against the device's (no torch)

Method packages (core/reward, core/rl, ...) import from here and never from each other; nothing
here imports a method package. Importing the package imports none of its modules, so torch loads
only with a module that needs it (device, optim, guards, checkpoints, distributed, rollout).
"""
