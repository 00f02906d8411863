"""PPO against a reward model: its settings (config), what the CLI and the app know of it (method),
its four models and how they are loaded (models), rewards, advantages and losses (algorithm), the
update (learner), the loop and its job (train), checkpoints (checkpoint), reward-hacking watchdogs
(watchdogs). Rollouts and policies come from the training toolkit (core/training).
Nothing is imported here, so naming a module of this package loads torch only when that module
needs it."""
