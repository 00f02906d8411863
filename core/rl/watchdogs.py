"""Warnings for the usual ways PPO goes wrong on language models (they warn; they never stop a run).

- KL too high: the policy has wandered far from the reference; its rewards may come from the reward
  model's blind spots rather than better answers.
- Length drift while reward rises: a reward model that likes long (or short) answers is being
  exploited.
- Entropy collapse: the policy says nearly the same thing every time and has stopped exploring.
- Identical responses: many prompts get the very same answer, a reward hack or mode collapse.

Each warning is given when its condition starts to hold, and again only after it stopped holding
for a while, so a run stuck in one state does not flood the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Figures of the first updates set the baseline a later drift is measured from.
BASELINE_UPDATES = 3


@dataclass
class Watchdogs:
    warn_kl: float
    warn_length_ratio: float
    warn_entropy: float
    warn_identical: float
    kl_setting: str = "kl_coef"  # what holds the policy to its reference, in this method's settings
    baseline_length: float | None = None
    baseline_reward: float | None = None
    _seen: list[tuple[float, float]] = field(default_factory=list)
    _active: set[str] = field(default_factory=set)

    @classmethod
    def from_config(cls, config) -> Watchdogs:
        kl_setting = "kl_coef" if getattr(config, "method", "ppo") == "ppo" else "beta"
        return cls(config.warn_kl, config.warn_length_ratio, config.warn_entropy, config.warn_identical, kl_setting)

    def check(self, figures: dict[str, float], responses: Sequence[str]) -> list[str]:
        """Warnings for one update; `figures` holds its metrics by name."""
        kl = figures.get("objective/kl")  # none without a reference (GRPO with beta 0)
        length = figures["val/response_length"]
        reward = figures["objective/scores"]
        entropy = figures["policy/entropy_avg"]
        if self.baseline_length is None:
            self._seen.append((length, reward))
            if len(self._seen) >= BASELINE_UPDATES:
                self.baseline_length = sum(s[0] for s in self._seen) / len(self._seen)
                self.baseline_reward = sum(s[1] for s in self._seen) / len(self._seen)
        conditions: dict[str, str | None] = {"kl": None, "length": None, "entropy": None, "identical": None}
        if kl is not None and kl > self.warn_kl:
            conditions["kl"] = (
                f"KL from the reference is {kl:.1f}, above {self.warn_kl:g}: the policy may be exploiting the reward "
                f"model; raise {self.kl_setting} or check the samples"
            )
        if self.baseline_length and self.baseline_reward is not None and reward > self.baseline_reward:
            ratio = max(length / self.baseline_length, self.baseline_length / max(length, 1e-9))
            if ratio >= self.warn_length_ratio:
                way = "longer" if length > self.baseline_length else "shorter"
                conditions["length"] = (
                    f"responses got {ratio:.1f}x {way} (mean {length:.1f} tokens, {self.baseline_length:.1f} at the "
                    "start) while the reward rose: the reward model may favour length"
                )
        if entropy < self.warn_entropy:
            conditions["entropy"] = (
                f"entropy fell to {entropy:.3f} per token, below {self.warn_entropy:g}: the policy has almost "
                "stopped exploring"
            )
        if responses:
            text, count = Counter(responses).most_common(1)[0]
            share = count / len(responses)
            if count > 1 and share >= self.warn_identical:
                conditions["identical"] = (
                    f"{share:.0%} of the batch's responses are the same text ({_clip(text)!r}): mode collapse or "
                    "a reward hack"
                )
        warnings = []
        for name, message in conditions.items():
            if message is None:
                self._active.discard(name)
            elif name not in self._active:
                self._active.add(name)
                warnings.append(message)
        return warnings

    def state(self) -> dict[str, Any]:
        return {
            "baseline_length": self.baseline_length, "baseline_reward": self.baseline_reward,
            "seen": self._seen, "active": sorted(self._active),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.baseline_length, self.baseline_reward = state["baseline_length"], state["baseline_reward"]
        self._seen = [tuple(s) for s in state["seen"]]
        self._active = set(state["active"])


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
