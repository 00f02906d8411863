"""PPO against a reward model: the config (config), the models and how they are loaded (models),
rollouts (rollout), rewards, advantages and losses (algorithm), the loop and its job (train),
checkpoints (checkpoint), reward-hacking watchdogs (watchdogs), the demo policy (demo_policy) and
policy-vs-reference pairs for people to judge (compare). Nothing is imported here, so naming a
module of this package loads torch only when that module needs it."""
