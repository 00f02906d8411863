"""The `rlhf-workbench` command.

    rlhf-workbench                         open the app
    rlhf-workbench PROJECT [--annotator N] open the app on a project
    rlhf-workbench init|demo|import|export|stats|formats ...
    rlhf-workbench train-rm|ppo PROJECT [--config FILE] [--set KEY=VALUE] [--resume RUN_ID]
                                           a training method's run (one command per method: core/methods.py)
    rlhf-workbench generate PROJECT [--model SPEC] [--model-b SPEC] [-n N] [--set KEY=VALUE]
    rlhf-workbench score MODEL TEXT...
    rlhf-workbench score-pairs PROJECT [--run RUN_ID]   for the Label tab's least-sure queue
    rlhf-workbench download ID [--revision R] [--yes]    a model from the Hugging Face hub, into its cache
    rlhf-workbench runs PROJECT [--compare RUN_ID...] [--export RUN_ID... --to DIR] [--delete RUN_ID]
    rlhf-workbench check PROJECT [--repair]            look for damage; make the safe repairs
    rlhf-workbench backup PROJECT OUT                  a consistent copy of the database, even in use

Every subcommand exits 0 on success and non-zero with a one-line reason on failure.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import multiprocessing
import os
import sys
from pathlib import Path

from . import __version__
from .errors import WorkbenchError, disk_full_error, is_disk_full_os_error
from .methods import METHODS
from .terminal import for_terminal
from .training.method import TrainingMethod


def main(argv: list[str] | None = None) -> int:
    # Large imports parse in a child process; a frozen app must let that child start as one.
    multiprocessing.freeze_support()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _TRAINING_COMMANDS:
        # Before anything slow: a SIGTERM from here on stops the run cleanly (core/runs/terminal.py).
        from .runs.terminal import defer_signals

        restore = defer_signals()
        try:
            return _run_subcommand(argv)
        finally:
            restore()
    if argv and argv[0] in _COMMANDS:
        return _run_subcommand(argv)
    if argv and argv[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    if argv and argv[0] == "--version":
        print(f"rlhf-workbench {__version__}")
        return 0
    return _open_app(argv)


def _open_app(argv: list[str]) -> int:
    # The app is imported by name so that the core never depends on Qt: a headless install
    # (a training server) runs every subcommand without PySide6.
    try:
        app_main = importlib.import_module("rlhf_workbench.app.main")
    except ImportError as exc:
        print(f"error: the desktop app cannot start ({exc}); the subcommands still work (see --help)", file=sys.stderr)
        return 1
    return app_main.main(argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhf-workbench",
        description="Collect preferences, train reward models, optimise policies by PPO, RLOO or GRPO. With no "
        "subcommand, opens the app (optionally on PROJECT, with --annotator NAME).",
    )
    parser.add_argument("--version", action="version", version=f"rlhf-workbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("init", help="create an empty project", description="Create an empty project folder.")
    p.add_argument("path", type=Path, help="folder to create the project in")
    p.add_argument("--name", help="project name (default: the folder's name)")

    p = sub.add_parser(
        "demo",
        help="create the demo project",
        description="Create the demo project: a few hundred prompts with two responses each and a preference "
        "rule a tiny model can learn on a CPU in minutes. Needs no download.",
    )
    p.add_argument("path", type=Path, nargs="?", help="folder (default: the demo folder in the user's data folder)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generator (default 0)")

    p = sub.add_parser(
        "import",
        help="import preference data into a project",
        description="Import files into a project. The format is detected unless --format names it. An import "
        "is one transaction: on a bad row nothing is imported, unless --skip-bad is given.",
    )
    p.add_argument("project", type=Path)
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    p.add_argument("--format", help="force a format (see `rlhf-workbench formats`)")
    p.add_argument(
        "--map",
        dest="mapping",
        type=_parse_mapping,
        help="column mapping for any CSV/JSONL, e.g. prompt=question,chosen=good,rejected=bad",
    )
    p.add_argument(
        "--verdict-values",
        type=_parse_verdict_values,
        metavar="VALUE=VERDICT,...",
        help="with --map ...,verdict=COLUMN: what the verdict column's values mean, e.g. 0=tie,1=a,2=b or -1=b,1=a "
        "or gut=a,schlecht=b (verdicts: a, b, tie, both_bad, none). verdict=COL1+COL2+COL3 reads several columns, "
        "each as its own annotator (dataset:mapped:COL1, or ANNOTATOR:COL1 with --annotator)",
    )
    p.add_argument("--annotator", help="attribute the data's own verdicts to this name (default: dataset:FORMAT)")
    p.add_argument("--skip-bad", action="store_true", help="import the good rows and report every rejected row")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = sub.add_parser("export", help="export a project's pairs", description="Export pairs and their verdicts.")
    p.add_argument("project", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--format", required=True, help="trl, trl-conversational, hh-rlhf or pairs")
    p.add_argument(
        "--annotator",
        action="append",
        dest="annotators",
        help="use only this annotator's verdicts (repeatable; default: all, settled by majority)",
    )

    p = sub.add_parser("stats", help="counts by origin, annotator and verdict")
    p.add_argument("project", type=Path)
    p.add_argument("--json", action="store_true", help="print as JSON")

    sub.add_parser("formats", help="list the formats that can be imported and exported")

    p = sub.add_parser(
        "generate",
        help="sample two candidate responses per prompt with a local model, as pairs to label",
        description="Add pairs of two sampled responses for the project's prompts (those without any pair first), "
        "with origin 'generated:<model>'. One model samples both responses, or --model-b writes response B. "
        "Ctrl+C adds nothing.",
    )
    p.add_argument("project", type=Path)
    p.add_argument("--model", help="a model folder, a cached model's org/name, a PPO checkpoint's policy, or 'demo' "
                   "(default: demo)")
    p.add_argument("--model-b", help="a second model, for response B (default: the first model samples both)")
    p.add_argument("-n", "--prompts", dest="n_prompts", type=int, help="how many prompts get a pair (default 32)")
    p.add_argument("--config", type=Path, help="a TOML file of settings (unknown keys are refused)")
    p.add_argument("--preset", metavar="NAME",
                   help="start from a preset's settings (quick-cpu, lora-8gb, lora-24gb, full-80gb); "
                   "--config and --set go over it")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting (repeatable), e.g. --set temperature=0.8 --set max_new_tokens=256",
    )
    p.add_argument("--json", action="store_true", help="print the counts as JSON")

    for method in METHODS:
        _training_parser(sub, method, method.command)
        for alias, fixed in method.aliases.items():
            _training_parser(sub, method, alias, fixed)

    p = sub.add_parser(
        "runs",
        help="list a project's runs, compare or export some, or delete one",
        description="List the project's runs, newest first. --compare RUN RUN... prints their final figures side "
        "by side, whether reward models and DPO policies validated on the same pairs, and the settings that differ "
        "(the app's Runs tab also overlays their curves). --export RUN... --to DIR writes their figures into "
        "DIR/<run id>/: TensorBoard event files (tensorboard --logdir DIR shows the runs side by side) and a CSV "
        "(one row per step, one column per figure); all or nothing. --delete RUN says what deleting it would remove "
        "(its folder, figures and records; pairs and verdicts stay) and which runs started from it; add --yes "
        "to delete it.",
    )
    p.add_argument("project", type=Path)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--compare", nargs="+", metavar="RUN_ID", help="two or more runs to compare")
    what.add_argument("--export", nargs="+", metavar="RUN_ID", help="runs whose figures to export (with --to)")
    what.add_argument("--delete", metavar="RUN_ID", help="the run to delete")
    p.add_argument("--to", type=Path, metavar="DIR", help="with --export: the folder to write into (made if missing; "
                   "a run exported there before is replaced)")
    p.add_argument("--format", dest="export_format", choices=("tensorboard", "csv", "both"), default="both",
                   help="with --export: what to write (default both)")
    p.add_argument("--yes", action="store_true", help="with --delete: delete it, not only say what would go")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = sub.add_parser(
        "score",
        help="print the reward a model gives each text",
        description="Print one reward per TEXT. A TEXT in transcript form ('User: ...\\n\\nAssistant: ...'), or "
        "one answering --prompt, is rendered as in training.",
    )
    p.add_argument("model", help="a reward-model checkpoint or run folder, a model folder, or org/name from the cache")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.add_argument("--prompt", help="score each TEXT as the response to this prompt")
    p.add_argument("--max-length", type=int, default=1024, help="longest text in tokens (default 1024)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (trusted models only)")

    p = sub.add_parser(
        "export-model",
        help="write a checkpoint as a plain transformers folder, its LoRA adapter merged in",
        description="Write CHECKPOINT (a policy or reward-model checkpoint, a run's checkpoint folder, or any model "
        "folder) to the new folder OUT as a plain transformers model in safetensors with its tokenizer, a LoRA "
        "adapter merged into its base: what vLLM, Ollama's importers or from_pretrained can load. The result is "
        "loaded back and its outputs compared with the checkpoint's before it is kept.",
    )
    p.add_argument("checkpoint", help="the checkpoint or model folder")
    p.add_argument("out", type=Path, help="the folder to write (new, or empty)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="the weights' type (default fp32)")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (trusted models only)")

    p = sub.add_parser(
        "score-pairs",
        help="score the pairs nobody has judged with a reward model (the Label tab's least-sure queue)",
        description="Write p = sigmoid(r_a - r_b) for every pair without a person's verdict that the run has not "
        "scored yet; the Label tab's \"Reward model least sure\" queue offers pairs with p nearest 0.5 first. "
        "Ctrl+C keeps the pairs scored so far.",
    )
    p.add_argument("project", type=Path)
    p.add_argument("--run", metavar="RUN_ID", help="a reward-model run (default: the latest finished one)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))

    p = sub.add_parser(
        "download",
        help="download a model from the Hugging Face hub into its cache (safetensors only)",
        description="Look ID (org/name) up on the hub, print its size and licence, ask, then download its "
        "safetensors weights, config and tokenizer (never pickle weights) into the Hugging Face cache, where every "
        "command and tool finds it as ID. Ctrl+C keeps the files already finished; downloading again fetches the rest.",
    )
    p.add_argument("repo_id", metavar="ID", help="the model's name on the hub, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    p.add_argument("--revision", help="a branch, tag or commit (default: main)")
    p.add_argument("--yes", action="store_true", help="download without asking (needed when input is not a terminal)")

    p = sub.add_parser(
        "evaluate",
        help="compare policies on held-out prompts: proxy and gold score, KL, length, distinct-2, win rate",
        description="Sample each policy (a run id, 'reference', a model folder or name) on prompts no run trained "
        "on (the project's held-out prompts; --hold-out N keeps N more out of training from now on) and report, "
        "per policy: the proxy reward model's score, the gold score (the demo's rules on the demo; else a reward "
        "model given as gold), KL to the reference, length, distinct-2 and people's win rate against the "
        "reference with a 95%% interval. The evaluation is saved in the project (--show reads it back).",
    )
    p.add_argument("project", type=Path)
    p.add_argument("--policy", dest="policies", action="append", default=[], metavar="POLICY",
                   help="a run id, 'reference', or a model folder or name (repeatable)")
    p.add_argument("--hold-out", dest="hold_out", type=int, metavar="N",
                   help="hold out N more prompts first (e.g. 64)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting, e.g. n_prompts=128, gold=RUN_ID, reward_model=RUN_ID, temperature=0.7")
    p.add_argument("--show", nargs="?", const="latest", metavar="ID", help="print a saved evaluation (default: the latest)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON, responses included")

    p = sub.add_parser(
        "compare-policies",
        help="make pairs of two policies' responses for people to judge (feeds the ranking)",
        description="Sample policies A and B (run ids or models) on the same prompts (the held-out ones when the "
        "project keeps some) and add the pairs to the Label tab's policies queue.",
    )
    p.add_argument("project", type=Path)
    p.add_argument("a", help="policy A: a run id, or a model folder or name")
    p.add_argument("b", help="policy B")
    p.add_argument("--prompts", type=int, default=32, help="how many prompts (one pair each; default 32)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser(
        "ranking",
        help="rank the policies people judged, Bradley-Terry style with bootstrap intervals",
        description="Every verdict between two policies (Compare with reference, compare-policies) as a game; "
        "ratings on the Elo scale, the reference met most often at 1000, with 95%% bootstrap intervals.",
    )
    p.add_argument("project", type=Path)
    p.add_argument("--rounds", type=int, default=200, help="bootstrap resamples (default 200)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "check",
        help="look for damage in a project: its database, its run folders, leftover files",
        description="Check the project's database for damaged pages (SQLite's integrity_check) and broken "
        "references, compare the run folders with the runs table, and look for leftovers of interrupted work. "
        "Exits 0 when nothing is wrong, 1 otherwise. Changes nothing unless --repair is given.",
    )
    p.add_argument("project", type=Path)
    p.add_argument("--repair", action="store_true",
                   help="make the safe repairs: remove leftovers that are nobody's data (half-written checkpoints)")

    p = sub.add_parser(
        "backup",
        help="copy a project's database, safely even while the app or a run uses it",
        description="Copy the project's database as one consistent snapshot (SQLite's backup API), safe while "
        "the app labels or a run trains. OUT is a new file, or a folder to put a dated file in. The run folders "
        "(checkpoints) are not included. To restore: a folder with the copy named project.db is the project.",
    )
    p.add_argument("project", type=Path)
    p.add_argument("out", type=Path, help="a new file, or a folder")
    return parser


def _parse_mapping(text: str) -> dict[str, str]:
    mapping = {}
    for item in text.split(","):
        target, sep, column = item.partition("=")
        if not sep or not target.strip() or not column.strip():
            raise argparse.ArgumentTypeError(f"{item!r} is not TARGET=COLUMN (e.g. prompt=question)")
        mapping[target.strip()] = column.strip()
    return mapping


def _parse_verdict_values(text: str) -> dict[str, str]:
    from .errors import ConfigError
    from .formats.mapped import parse_verdict_values

    try:
        return parse_verdict_values(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--verdict-values: ")) from None


def _run_subcommand(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except WorkbenchError as exc:
        # One write per line: under torchrun every rank may refuse at once, into the same stream.
        sys.stderr.write(f"error: {_rank_prefix()}{for_terminal(exc, keep_newlines=True)}\n")
        return 1
    except OSError as exc:
        # The disk or the folder, not the workbench: a full disk or a folder that cannot be
        # written is said in one line wherever it is met (a run's config, an export's file).
        if is_disk_full_os_error(exc):
            message = disk_full_error(exc.filename or Path.cwd(), cause=exc).message
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and exc.filename:
            message = f"{exc.filename}: cannot be written ({exc.strerror})"
        else:
            raise
        sys.stderr.write(f"error: {_rank_prefix()}{message}\n")
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; the unfinished step was rolled back", file=sys.stderr)
        return 130


def _rank_prefix() -> str:
    # From torchrun's environment, not core.training.distributed: an error path should not import torch.
    rank = os.environ.get("RANK", "0")
    return f"rank {rank}: " if rank != "0" and os.environ.get("WORLD_SIZE", "1") != "1" else ""


def _cmd_init(args) -> int:
    from .project import Project

    with Project.create(args.path, name=args.name) as project:
        print(f"created project {project.name!r} in {project.path}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import create_demo_project
    from .project import demo_project_path

    path = args.path or demo_project_path()
    with create_demo_project(path, seed=args.seed) as project:
        counts = project.store.counts()
        print(
            f"created the demo project in {project.path}: {counts['pairs']:,} pairs, "
            f"{counts['judgments']:,} already judged by dataset:demo"
        )
    return 0


def _cmd_import(args) -> int:
    from .importing import import_file
    from .project import Project

    reports = []
    with Project.open(args.project) as project:
        for path in args.files:
            with _ProgressBar(path.name, disabled=args.quiet or args.json) as bar:
                report = import_file(
                    project,
                    path,
                    format=args.format,
                    mapping=args.mapping,
                    annotator=args.annotator,
                    verdict_values=args.verdict_values,
                    skip_bad=args.skip_bad,
                    sink=bar.sink,
                )
            reports.append(report)
            if not args.json:
                print(for_terminal(report.summary()))
                for rejected in report.rejected:
                    print(f"  rejected {for_terminal(rejected)}", file=sys.stderr)
                if report.rejected_count > len(report.rejected):
                    print(f"  ... and {report.rejected_count - len(report.rejected):,} more", file=sys.stderr)
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    return 0


def _cmd_export(args) -> int:
    from .exporting import export_file
    from .project import Project

    with Project.open(args.project) as project:
        report = export_file(project, args.file, format=args.format, annotators=args.annotators)
    print(for_terminal(report.summary()))
    return 0


def _cmd_stats(args) -> int:
    from .project import Project

    with Project.open(args.project) as project:
        store = project.store
        stats = {
            "project": project.name,
            "path": str(project.path),
            "counts": store.counts(),
            "unlabelled_pairs": store.unlabelled_pair_count(),  # held-out prompts' pairs aside: they train nothing
            "heldout_prompts": len(store.heldout_prompt_ids()),
            "pairs_by_origin": store.pairs_by_origin(),
            "judgments_by_annotator": store.judgments_by_annotator_and_verdict(),
        }
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    counts = stats["counts"]
    print(for_terminal(f"{stats['project']} ({stats['path']})"))
    print(
        f"  {counts['prompts']:,} prompts, {counts['responses']:,} responses, {counts['pairs']:,} pairs, "
        f"{counts['judgments']:,} verdicts, {counts['runs']:,} runs"
    )
    heldout = f" ({stats['heldout_prompts']:,} prompts held out to evaluate; their pairs train nothing)" if stats["heldout_prompts"] else ""
    print(f"  {stats['unlabelled_pairs']:,} pairs left for people to judge{heldout}")
    if stats["pairs_by_origin"]:
        print("pairs by origin:")
        for origin, n in stats["pairs_by_origin"].items():
            print(f"  {for_terminal(origin):<28} {n:>9,}")
    if stats["judgments_by_annotator"]:
        print("verdicts by annotator:")
        for annotator, verdicts in stats["judgments_by_annotator"].items():
            detail = for_terminal(", ".join(f"{v} {n:,}" for v, n in verdicts.items()))
            print(f"  {for_terminal(annotator):<28} {sum(verdicts.values()):>9,}  ({detail})")
    return 0


def _cmd_formats(args) -> int:
    from .formats import FORMATS, readable_formats

    readable_formats()  # loads every format module
    for fmt in sorted(FORMATS.values(), key=lambda f: f.name):
        ways = "/".join(w for w, ok in (("import", fmt.parse_row), ("export", fmt.write)) if ok)
        print(f"{fmt.name:<20} {ways:<14} {fmt.description}")
    return 0


def _cmd_generate(args) -> int:
    from .generate import GenerateConfig, generate_pairs, summary
    from .runs.terminal import parse_overrides
    from .training.config import config_from_dict, config_to_dict, load_config

    config = load_config(GenerateConfig, args.config) if args.config else GenerateConfig()
    flags = {k: v for k, v in (("model", args.model), ("model_b", args.model_b), ("n_prompts", args.n_prompts))
             if v is not None}
    settings = {**config_to_dict(config), **flags, **parse_overrides(args.overrides)}
    config = config_from_dict(GenerateConfig, settings, source="the options").validate()
    with _ProgressBar("responses", disabled=args.json, unit="response") as bar:
        counts = generate_pairs(args.project, config, sink=bar.sink)
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    print(for_terminal(summary(counts)))
    return 0


def _training_parser(sub, method: TrainingMethod, command: str, fixed: dict | None = None) -> None:
    """A method's command; an alias fixes some settings (`ppo` is `rl` with method ppo)."""
    if fixed:
        settings = ", ".join(f"{key} {value}" for key, value in fixed.items())
        help_text = f"{method.command} with {settings}"
        description = f"`{method.command}` with {settings}: {method.description}"
    else:
        help_text, description = method.help, method.description
    p = sub.add_parser(
        command, help=help_text,
        description=f"{description} Ctrl+C (or SIGTERM) stops with a checkpoint; --resume continues a run "
        "from its last one. Runs unchanged under torchrun (see the README's 'Several GPUs').",
    )
    p.add_argument("project", type=Path)
    p.add_argument("--config", type=Path, help="a TOML file of settings (unknown keys are refused)")
    p.add_argument("--preset", metavar="NAME",
                   help="start from a preset's settings (quick-cpu, lora-8gb, lora-24gb, full-80gb); "
                   "--config and --set go over it")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override one setting (repeatable), e.g. {method.set_example}",
    )
    p.add_argument("--name", default="", help="a name for the run (default: its id)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue this run from its last complete checkpoint")
    # For the app, which creates the run itself and reads the events (core/runs/torchrun.py).
    p.add_argument("--app-run", dest="created_run", metavar="RUN_ID", help=argparse.SUPPRESS)
    p.add_argument("--events", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true",
                   help="start even when the memory estimate says the run does not fit the device")


def _cmd_train(method: TrainingMethod, fixed: dict | None = None):
    def command(args) -> int:
        from .runs.terminal import run_from_terminal

        return run_from_terminal(method, args.project, config_path=args.config, overrides=args.overrides,
                                 name=args.name, resume=args.resume, created_run=args.created_run, events=args.events,
                                 fixed=fixed, preset=args.preset, force=args.force)

    return command


def _cmd_runs(args) -> int:
    from .runs_console import runs_command

    return runs_command(args.project, delete=args.delete, yes=args.yes, as_json=args.json, compare=args.compare,
                        export=args.export, to=args.to, export_format=args.export_format)


def _cmd_score(args) -> int:
    from .models import resolve_model

    model = resolve_model(args.model)  # a missing model is reported before torch takes seconds to load
    from .reward.evaluate import score

    items = [(args.prompt, t) for t in args.texts] if args.prompt is not None else args.texts
    for value in score(model, items, max_length=args.max_length, device=args.device,
                       trust_remote_code=args.trust_remote_code):
        print(f"{value:.6f}")
    return 0


def _cmd_export_model(args) -> int:
    from .model_export import export_model

    result = export_model(args.checkpoint, args.out, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                          sink=lambda event: print(for_terminal(event.message), file=sys.stderr))
    merged = "LoRA adapter merged, " if result["merged"] else ""
    print(f"{result['out']}: {result['kind']} model, {merged}{result['parameters']:,} parameters in {result['dtype']}, "
          f"outputs within {result['max_difference']:.2g} of the checkpoint's")
    return 0


def _cmd_score_pairs(args) -> int:
    from .project import Project
    from .reward.pair_scores import score_unjudged_pairs

    with Project.open(args.project) as project:
        result = score_unjudged_pairs(project, args.run, device=args.device)
    print(for_terminal(f"scored {result['scored']:,} pairs with run {result['run_id']} ({result['run_name']}); "
                       f"{result['total']:,} pairs have its scores"))
    return 0


def _cmd_download(args) -> int:
    from .download import download_command

    with _ProgressBar(args.repo_id, disabled=False) as bar:
        return download_command(args.repo_id, args.revision, yes=args.yes, progress=bar.sink)


def _cmd_evaluate(args) -> int:
    from .evaluation_console import evaluate_command

    with _ProgressBar("evaluating", disabled=args.json, unit="responses") as bar:
        return evaluate_command(args.project, policies=args.policies, hold_out_n=args.hold_out,
                                overrides=args.overrides, show=args.show, as_json=args.json, progress=bar.sink)


def _cmd_compare_policies(args) -> int:
    from .evaluation_console import compare_policies_command

    with _ProgressBar("sampling", disabled=False, unit="responses") as bar:
        return compare_policies_command(args.project, args.a, args.b, prompts=args.prompts, seed=args.seed,
                                        progress=bar.sink)


def _cmd_ranking(args) -> int:
    from .evaluation_console import ranking_command

    return ranking_command(args.project, rounds=args.rounds, as_json=args.json)


# Each training command: its method and the settings it fixes (an alias: `ppo` is `rl` with method ppo).
_TRAINING_COMMANDS: dict[str, tuple[TrainingMethod, dict | None]] = {
    **{method.command: (method, None) for method in METHODS},
    **{alias: (method, dict(fixed)) for method in METHODS for alias, fixed in method.aliases.items()},
}


def training_config(argv: list[str]) -> tuple[TrainingMethod, object]:
    """The method and the settings that `rlhf-workbench COMMAND PROJECT [--config FILE] [--set
    KEY=VALUE ...]` (argv without the program's name) would start a new run with, read exactly as
    the command reads them, without opening the project: how Copy command's round trip is checked
    (core/training/command.py builds such commands)."""
    from .runs.terminal import config_from_options

    args = _parser().parse_args(argv)
    if args.command not in _TRAINING_COMMANDS:
        raise WorkbenchError(f"{args.command} is not a training command")
    method, fixed = _TRAINING_COMMANDS[args.command]
    return method, config_from_options(method, args.config, args.overrides, fixed, args.preset)


def _cmd_check(args) -> int:
    from .maintenance import check_project

    report = check_project(args.project, repair=args.repair)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _cmd_backup(args) -> int:
    from .maintenance import backup_project

    target = backup_project(args.project, args.out)
    print(f"backed up {args.project / 'project.db'} to {target} ({target.stat().st_size / 1e6:.1f} MB); "
          "the run folders (checkpoints) are not included")
    return 0


_COMMANDS = {
    "init": _cmd_init,
    "check": _cmd_check,
    "backup": _cmd_backup,
    "demo": _cmd_demo,
    "import": _cmd_import,
    "export": _cmd_export,
    "stats": _cmd_stats,
    "formats": _cmd_formats,
    "generate": _cmd_generate,
    **{command: _cmd_train(method, fixed) for command, (method, fixed) in _TRAINING_COMMANDS.items()},
    "runs": _cmd_runs,
    "score": _cmd_score,
    "score-pairs": _cmd_score_pairs,
    "download": _cmd_download,
    "export-model": _cmd_export_model,
    "evaluate": _cmd_evaluate,
    "compare-policies": _cmd_compare_policies,
    "ranking": _cmd_ranking,
}


class _ProgressBar:
    """A progress bar on stderr (of bytes, unless told another unit), shown only when stderr is a terminal."""

    def __init__(self, label: str, *, disabled: bool, unit: str = "B"):
        self.label, self.unit = for_terminal(label), unit
        self.disabled = disabled or not sys.stderr.isatty()
        self.bar = None

    def __enter__(self) -> "_ProgressBar":
        return self

    def sink(self, event) -> None:
        """A sink for work's events: each Progress moves the bar."""
        from .events import Progress

        if isinstance(event, Progress) and event.total:
            self.update(event.step, event.total)

    def update(self, done: int, total: int) -> None:
        if self.disabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit=self.unit, unit_scale=self.unit == "B", leave=False,
                            file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
