"""Reward models: the Bradley-Terry loss (loss), data preparation (data), the training loop and
its job (train), checkpoints (checkpoint), scoring and evaluation (evaluate), devices (hardware),
the `train-rm` command's printing (console) and entry points for the GUI's child processes
(remote). Nothing is imported here, so naming a module of this package loads torch only when that
module needs it."""
