"""`rlhf-workbench evaluate`, `compare-policies` and `ranking`: Evaluate and the people's ranking in
a terminal, as tables (or JSON), the same figures the Evaluate tab shows."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .compare import compare_policies
from .errors import WorkbenchError
from .evaluation import DEFAULT_HOLDOUT, EvaluateSettings, evaluate_policies, hold_out, policy_ranking
from .project import Project
from .runs.terminal import parse_overrides
from .training.config import config_from_dict, config_to_dict


def evaluate_command(project_path: Path, *, policies: list[str], hold_out_n: int | None, overrides: list[str],
                     show: str | None, as_json: bool, progress=None) -> int:
    if hold_out_n is not None:
        counts = hold_out(project_path, hold_out_n)
        print(f"held out {counts['added']:,} more prompts; {counts['heldout']:,} in all (no run trains on them)",
              file=sys.stderr if as_json else sys.stdout)
    if show is not None:
        with Project.open(project_path) as project:
            found = project.store.evaluations()
        if not found:
            raise WorkbenchError(f"{project_path}: has no evaluation yet")
        evaluation = found[0] if show == "latest" else next((e for e in found if e["id"] == show), None)
        if evaluation is None:
            raise WorkbenchError(f"{project_path}: has no evaluation {show!r} (it has {', '.join(e['id'] for e in found)})")
    elif policies:
        settings = config_from_dict(EvaluateSettings, {**config_to_dict(EvaluateSettings()), **parse_overrides(overrides)},
                                    source="--set")
        evaluation = evaluate_policies(project_path, policies, settings, sink=progress)
    else:
        if hold_out_n is None:
            raise WorkbenchError("name the policies to evaluate (--policy RUN_ID, repeatable), or give --hold-out N "
                                 "or --show")
        return 0
    if as_json:
        print(json.dumps(evaluation))
    else:
        print(evaluation_text(evaluation))
    return 0


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def evaluation_text(evaluation: dict[str, Any]) -> str:
    """The evaluation as a table, with what was measured how above it."""
    results = evaluation["results"]
    gold = results["gold"]
    lines = [
        f"evaluation {evaluation['id']}: {results['prompts']:,} held-out prompts x {results['samples_per_prompt']} "
        f"(of {results['heldout_prompts']:,} held out), temperature {results['sampling']['temperature']}, "
        f"up to {results['sampling']['max_new_tokens']} tokens, {results['seconds']} s",
        f"gold: {gold['name'] or 'none (pick a reward model as the judge with --set gold=RUN_ID)'}",
    ]
    header = ("policy", "proxy", "gold", "KL", "tokens", "distinct-2", "people's win rate (95%)")
    rows = [header]
    for row in results["rows"]:
        win = "-"
        if row["win_rate"] is not None:
            low, high = row["win_interval"]
            win = f"{row['win_rate']:.0%} [{low:.0%}, {high:.0%}] of {row['judged']}"
        flag = " *" if row["trained_before_heldout"] else ""
        rows.append((row["policy"] + flag, _figure(row["proxy"], "+.3f"), _figure(row["gold"], ".3f"),
                     _figure(row["kl"], ".3f"), _figure(row["length_tokens"], ".1f"), _figure(row["distinct_2"], ".3f"), win))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip())
    proxies = sorted({row["proxy_model"] for row in results["rows"] if row["proxy_model"]})
    lines.append(f"proxy: {', '.join(proxies)}" if proxies else "proxy: none (no reward model in the project)")
    if any(row["trained_before_heldout"] for row in results["rows"]):
        lines.append("* started before the prompts were held out: it may have trained on them")
    return "\n".join(lines)


def compare_policies_command(project_path: Path, a: str, b: str, *, prompts: int, seed: int, progress=None) -> int:
    counts = compare_policies(project_path, a, b, n_prompts=prompts, seed=seed, sink=progress)
    where = "held-out prompts" if counts["heldout"] else "prompts (the project holds none out)"
    parts = [f"{counts['pairs_added']:,} pairs of {counts['a']} against {counts['b']} on {where} went into the "
             f"Label tab's policies queue (origin {counts['origin']})"]
    if counts["pairs_existing"]:
        parts.append(f"{counts['pairs_existing']:,} were there already")
    if counts["identical"]:
        parts.append(f"{counts['identical']:,} prompts got the same response from both and were skipped")
    print("; ".join(parts) + ".")
    return 0


def ranking_command(project_path: Path, *, rounds: int, as_json: bool) -> int:
    ranking = policy_ranking(project_path, rounds=rounds)
    if as_json:
        print(json.dumps(ranking))
        return 0
    print(ranking_text(ranking))
    return 0


def ranking_text(ranking: dict[str, Any]) -> str:
    if not ranking["rows"]:
        return ("no verdicts between policies yet: Compare with reference (a policy tab) or `rlhf-workbench "
                "compare-policies`, then judge the pairs in the Label tab")
    anchor = f"{ranking['anchor']} = 1000" if ranking["anchor"] else "a virtual average player = 1000"
    lines = [f"Bradley-Terry ratings from {ranking['games']:,} verdicts (Elo scale, {anchor}; 95% bootstrap interval)"]
    rows = [("policy", "rating", "95% interval", "verdicts", "won", "lost", "tied")]
    for r in ranking["rows"]:
        rows.append((r["policy"], f"{r['rating']:.0f}", f"[{r['low']:.0f}, {r['high']:.0f}]", str(r["games"]),
                     str(r["wins"]), str(r["losses"]), str(r["ties"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip())
    return "\n".join(lines)


__all__ = ["DEFAULT_HOLDOUT", "compare_policies_command", "evaluate_command", "evaluation_text", "ranking_command",
           "ranking_text"]
