"""PPO against a reward model: the config (config), the models and how they are loaded (models),
rollouts (rollout), rewards, advantages and losses (algorithm), the loop and its job (train),
checkpoints (checkpoint), reward-hacking watchdogs (watchdogs), the demo policy (demo_policy),
policy-vs-reference pairs for people to judge (compare), the `ppo` command (console) and entry
points for the GUI's child processes (remote). Nothing is imported here, so naming a
module of this package loads torch only when that module needs it."""
