"""Turning records into plain text for display. Nothing here produces HTML, on purpose.

Text from datasets is shown as plain text everywhere: a response that contains `<b>` or
`<img src=x>` must show those characters, never render them. Widgets that would guess at rich
text (QLabel, tooltips) get their text through `plain_label` or not at all.
"""

from __future__ import annotations

from pathlib import Path

from rlhf_workbench.core.offline.config import METHOD_TITLES as OFFLINE_TITLES
from rlhf_workbench.core.records import Conversation
from rlhf_workbench.core.rl.config import METHOD_TITLES as RL_TITLES

# How verdict codes read in the interface.
VERDICT_NAMES: dict[str, str] = {
    "a": "A better",
    "b": "B better",
    "tie": "Tie",
    "both_bad": "Both bad",
    "skip": "Skip",
}

ROLE_NAMES: dict[str, str] = {"system": "System", "user": "User", "assistant": "Assistant"}


# How a run's kind reads (the Runs tab, Compare).
KIND_NAMES: dict[str, str] = {"reward": "Reward model", **OFFLINE_TITLES, **RL_TITLES, "generate": "Generation"}


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def one_line(text: str, limit: int = 200) -> str:
    """Text squeezed onto one line for a table cell: whitespace runs become single spaces."""
    squeezed = " ".join(text.split())
    return squeezed if len(squeezed) <= limit else squeezed[: limit - 1] + "…"


def prompt_summary(conversation: Conversation, limit: int = 200) -> str:
    """The last user turn (what the responses answer), with a turn count for longer conversations."""
    last_user = next((m.content for m in reversed(conversation) if m.role == "user"), None)
    text = one_line(last_user if last_user is not None else (conversation[-1].content if conversation else ""), limit)
    if len(conversation) > 1:
        text = f"[{len(conversation)} turns] {text}"
    return text


def conversation_text(conversation: Conversation) -> str:
    """A conversation as plain text: each turn under its role's name."""
    blocks = [f"── {ROLE_NAMES.get(m.role, m.role)} ──\n{m.content}" for m in conversation]
    return "\n\n".join(blocks)


def judgments_text(judgments: list[tuple[str, str]]) -> str:
    if not judgments:
        return "not judged yet"
    return "; ".join(f"{annotator}: {VERDICT_NAMES.get(v, v)}" for annotator, v in judgments)


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def display_path(path: Path) -> str:
    """A path as people read it: `~/...` under the home folder, absolute elsewhere."""
    home = Path.home()
    try:
        return "~/" + path.relative_to(home).as_posix() if path != home else "~"
    except ValueError:
        return str(path)
