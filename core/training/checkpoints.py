"""Training checkpoints: written whole or not at all, and enough to resume exactly. Every method
writes its own through `save_checkpoint` (PPO: two models in one, core/rl/checkpoint.py).

    run_dir/checkpoints/
        step-000100/          model (safetensors) + tokenizer + trainer state
        step-000200/
        best -> step-000100   highest validation accuracy (a link, or a copy where links fail)
        last -> step-000200

A checkpoint folder holds what `transformers` (or peft, for LoRA) loads, plus:
- trainer_state.json: step, data position (epoch, batch index), best so far, scheduler and loss
  scaler state, python and numpy RNG states, the validation figures at this step;
- optimizer.safetensors: AdamW's moments and steps; the parameter groups go in trainer_state;
- rng_state.safetensors: torch's CPU and CUDA generators.
No pickle anywhere: a checkpoint can be opened without running code (see models.py).

Each is written into a hidden temporary folder and renamed into place, so a folder named
`step-*` is complete; a kill leaves at most a temporary folder, removed by the next save.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..models import ModelError, check_model_files, quiet_transformers
from .dependents import checkpoint_dependents

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng_state.safetensors"
FORMAT_VERSION = 1


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def step_folders(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    found = []
    for folder in checkpoints_dir(run_dir).glob("step-*"):
        try:
            step = int(folder.name.removeprefix("step-"))
        except ValueError:
            continue
        if (folder / STATE_FILE).is_file() and not folder.is_symlink():
            found.append((step, folder))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    folders = step_folders(run_dir)
    return folders[-1][1] if folders else None


def save_checkpoint(
    run_dir: Path,
    *,
    model=None,
    tokenizer=None,
    write_weights: Callable[[Path], None] | None = None,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    state: dict[str, Any],
    best: bool,
    keep_last: int,
) -> Path:
    """Writes `step-NNNNNN` for state['step'], points `last` (and `best` when best) at it, prunes.

    The weights are the model and tokenizer saved in the folder itself, or whatever
    `write_weights(folder)` writes (PPO saves two models in subfolders).
    """
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    name = f"step-{state['step']:06d}"
    tmp = root / f".tmp-{name}"
    try:
        tmp.mkdir()
        if write_weights is not None:
            write_weights(tmp)
        else:
            with quiet_transformers():
                model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        opt_tensors, opt_rest = _split_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
        save_file(_torch_rng(), str(tmp / RNG_FILE))
        full_state = {
            **state,
            "format": FORMAT_VERSION,
            "optimizer": opt_rest,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "python_rng": _python_rng(),
            "numpy_rng": _numpy_rng(),
        }
        # Written last: a folder with this file is complete even before the rename.
        (tmp / STATE_FILE).write_text(json.dumps(full_state, indent=1), encoding="utf-8")
    except Exception as exc:
        # A half-written checkpoint takes room the disk may not have: it goes now, and the last
        # complete one stays. safetensors reports a full disk in its own words; say it in ours.
        shutil.rmtree(tmp, ignore_errors=True)
        code = None if isinstance(exc, OSError) else _out_of_room(exc)
        if code is not None:
            raise OSError(code, os.strerror(code), str(root)) from exc
        raise
    final = root / name
    if final.exists():  # the same step again (a stop right after a scheduled save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _point(root / "last", final)
    if best:
        _point(root / "best", final)
    _prune(run_dir, keep_last)
    return final


def _out_of_room(exc: BaseException) -> int | None:
    """ENOSPC or EFBIG where an error says so only in its text (safetensors' do), else None."""
    text = str(exc)
    if "No space left" in text or "StorageFull" in text:
        return errno.ENOSPC
    if "File too large" in text or "FileTooLarge" in text:
        return errno.EFBIG
    return None


def best_checkpoint(run_dir: Path) -> Path | None:
    best = checkpoints_dir(run_dir) / "best"
    return best if best.is_dir() else None


def _point(link: Path, target: Path) -> None:
    """Makes `link` name `target`: a relative symlink swapped in atomically, or a copy."""
    tmp = link.with_name(f".tmp-{link.name}")
    if tmp.is_symlink() or tmp.exists():
        _remove(tmp)
    try:
        os.symlink(target.name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):  # Windows without the right to make links
        shutil.copytree(target, tmp)
    if link.exists() and not link.is_symlink():
        _remove(link)  # a copy: a folder cannot be replaced in one step
    os.replace(tmp, link)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _prune(run_dir: Path, keep_last: int) -> None:
    root = checkpoints_dir(run_dir)
    keep = {p.resolve() for p in (root / "best", root / "last") if p.is_symlink()}
    folders = step_folders(run_dir)
    old = folders[:-keep_last] if keep_last > 0 else folders
    # Another run that started from one of these loads it again whenever it is resumed.
    depended = checkpoint_dependents(run_dir) if old else {}
    for _, folder in old:
        if folder.resolve() not in keep and folder.name not in depended:
            shutil.rmtree(folder, ignore_errors=True)


# -- restoring ---------------------------------------------------------------------------------


def load_trainer_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / STATE_FILE}: cannot be read ({exc})") from None
    if state.get("format") != FORMAT_VERSION:
        raise ModelError(f"{folder}: checkpoint format {state.get('format')} is not {FORMAT_VERSION}")
    return state


def restore(folder: Path, *, model, optimizer, scheduler, scaler) -> dict[str, Any]:
    """Loads weights, optimizer, scheduler, scaler and every RNG from `folder`; returns the state.

    `model` None: the caller restores the weights itself (PPO's two models)."""
    check_model_files(folder)  # a damaged file named, not a traceback from deep in safetensors
    state = load_trainer_state(folder)
    if model is not None:
        restore_weights(model, folder)
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    optimizer.load_state_dict(_join_optimizer(tensors, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    _set_torch_rng(load_file(str(folder / RNG_FILE)))
    random.setstate(_to_tuple(state["python_rng"]))
    kind, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return state


def restore_weights(model, folder: Path) -> None:
    """Loads the checkpoint's trainable weights into an already built model of the same shape."""
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
        return
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    weights: dict[str, torch.Tensor] = {}
    for shard in shards:
        weights.update(load_file(str(folder / shard)))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied]
    if unexpected or missing:
        raise ModelError(
            f"{folder}: does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _split_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def _join_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for index, entry in rest["plain"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": rest["param_groups"]}


def _torch_rng() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{i}"] = s
    return states


def _set_torch_rng(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted(k for k in states if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _python_rng() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _to_tuple(saved: list) -> tuple:
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)


def _numpy_rng() -> list:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]
