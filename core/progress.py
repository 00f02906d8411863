"""How far a project has got along the loop, and what to do next.

The workbench's loop is five steps (the README's and the tabs' order): bring data in, label it,
train a reward model, train a policy, check it. A new project, or one a person comes back to,
should say where it stands and what comes next, rather than leave the person to work out which
of seven tabs to open. Each step is done when the project holds what it makes; the next step is the
first not done. Counting is a few indexed queries (the Data tab reads it with its overview, off
the GUI thread). No torch, no Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

from .policies import POLICY_RUN_KINDS

# (key, title, what it means to do it): the loop's steps, in order.
STEPS = (
    ("data", "Import or generate", "import preference data or prompts (Import…), or let a model write pairs (Generate…)"),
    ("label", "Label", "judge pairs in the Label tab: A better, B better, tie, both bad"),
    ("reward", "Train a reward model", "train a reward model on the labelled pairs (Reward model tab)"),
    ("policy", "Train a policy", "train a policy: RL against the reward model, or SFT / DPO from the labels"),
    ("check", "Evaluate", "evaluate the policies on held-out prompts and have people compare them (Evaluate tab)"),
)


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    action: str
    done: bool
    detail: str  # what the project holds for this step, in a few words


@dataclass(frozen=True)
class LoopProgress:
    steps: tuple[Step, ...]

    @property
    def next(self) -> Step | None:
        """The first step not done; None once every one is."""
        return next((s for s in self.steps if not s.done), None)

    @property
    def done(self) -> int:
        return sum(s.done for s in self.steps)

    def summary(self) -> str:
        step = self.next
        if step is None:
            return ("Every step of the loop has been taken. Label the policies' pairs, train again on the new "
                    "labels, and compare in Evaluate.")
        number = self.steps.index(step) + 1
        return f"Next, step {number} of {len(self.steps)}: {step.action}."


def loop_progress(store) -> LoopProgress:
    """Where the project stands on each step of the loop."""
    counts = store.counts()
    labelled = store.conn.execute(
        "SELECT count(DISTINCT pair_id) FROM judgments WHERE undone = 0 AND verdict != 'skip'"
    ).fetchone()[0]
    trained: dict[str, int] = {"reward": 0, "policy": 0}
    for run in store.runs():
        if store.last_checkpoint(run["id"]) is None:
            continue
        if run["kind"] == "reward":
            trained["reward"] += 1
        elif run["kind"] in POLICY_RUN_KINDS:
            trained["policy"] += 1
    evaluations = store.conn.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    details = {
        "data": (counts["pairs"] > 0 or counts["prompts"] > 0,
                 f"{counts['pairs']:,} pairs, {counts['prompts']:,} prompts"),
        "label": (labelled > 0, f"{labelled:,} pairs labelled"),
        "reward": (trained["reward"] > 0, f"{trained['reward']:,} reward models"),
        "policy": (trained["policy"] > 0, f"{trained['policy']:,} policies"),
        "check": (evaluations > 0, f"{evaluations:,} evaluations"),
    }
    return LoopProgress(tuple(Step(key, title, action, *details[key]) for key, title, action in STEPS))
