"""Reward models: their settings (config), what the CLI and the app know of the method (method),
the Bradley-Terry loss (loss), the training loop and its job (train), scoring and evaluation
(evaluate), scores of unlabelled pairs for the Label tab (pair_scores) and the work the app runs in
a child process (remote). Pairs, checkpoints and devices come from the training toolkit
(core/training). Nothing is imported here, so naming a module of this package loads torch only
when that module needs it."""
