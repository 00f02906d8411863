"""The training methods the workbench offers, in the order its tabs and its help list them.

Each is a method package's `method.py` (core/training/method.py says what one holds). The CLI
makes one command per method from this list; the app has one tab per method. Imports no torch.
"""

from __future__ import annotations

from .offline.method import OFFLINE
from .reward.method import REWARD_MODEL
from .rl.method import RL
from .training.method import TrainingMethod

METHODS: tuple[TrainingMethod, ...] = (REWARD_MODEL, OFFLINE, RL)


def method_for_kind(kind: str) -> TrainingMethod | None:
    return next((m for m in METHODS if kind in m.kinds), None)
