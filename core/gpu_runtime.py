"""The GPU runtime of the packaged app: a CUDA build of torch installed next to, not inside, the bundle.

The installers ship the CPU build of torch (a bundle with CUDA torch passes 2 GB, too large for
common installer formats and release hosts), so the app starts and trains everywhere, with no
network. Where an NVIDIA driver is present the person may add a GPU runtime: the CUDA build of
the *same* torch version, downloaded once with pip into the user data folder:

    <user data>/gpu-runtime/torch-<version>-<variant>/   torch, nvidia-*, triton (nothing else)
    <user data>/gpu-runtime/state.json                    {"active": "<variant>" or null}

`activate()`, called by the frozen app's launcher before anything imports torch (in the window's
process and in every child it spawns), puts the active runtime first on sys.path, so `import torch`
finds the CUDA build and every other module still comes from the bundle. It does so only when the
runtime was completely installed for the bundle's torch version and an NVIDIA driver is still
there; otherwise the bundled CPU torch is used. The way back to CPU: `--gpu-runtime use-cpu`
(keeps the files), `--gpu-runtime remove`, or RLHF_WORKBENCH_CPU_ONLY=1 for one start.

Commands (`rlhf-workbench --gpu-runtime ...`, see app/main.py): status, install [--variant V],
use-cpu, use-gpu, remove. `install` prints `progress DONE TOTAL MESSAGE` lines that the GUI's
dialog turns into a progress bar. RLHF_WORKBENCH_GPU_INDEX_URL names a mirror of the PyTorch
index, RLHF_WORKBENCH_GPU_PIP_ARGS adds pip arguments (a proxy, say). From a source checkout
nothing is activated (pip users install the torch they want), unless
RLHF_WORKBENCH_GPU_RUNTIME_PATH names a folder (tests use that).

Never imports torch or Qt.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

STATE_NAME = "state.json"
READY_NAME = "READY.json"
CPU_ONLY_ENV = "RLHF_WORKBENCH_CPU_ONLY"
PATH_ENV = "RLHF_WORKBENCH_GPU_RUNTIME_PATH"  # activate this folder (tests, and checking a new install)
ACTIVE_ENV = "RLHF_WORKBENCH_TORCH_RUNTIME"  # set by activate(): which runtime this process uses
INDEX_ENV = "RLHF_WORKBENCH_GPU_INDEX_URL"  # another index (a mirror) in place of download.pytorch.org
PIP_ARGS_ENV = "RLHF_WORKBENCH_GPU_PIP_ARGS"  # more pip arguments (a proxy, --find-links, ...)
PIP_FLAG = "--run-bundled-pip"  # the frozen launcher runs the bundled pip when given this first
INDEX = "https://download.pytorch.org/whl/{variant}"
# What a CUDA torch wheel brings that the bundle does not already have: everything else pip puts
# in the folder (sympy, jinja2, ...) is removed again, so the bundle's own copies stay in use.
KEEP_PREFIXES = ("torch", "functorch", "torchgen", "nvidia", "triton", "cuda", "cusparselt", "nccl")

# The CUDA builds published for a torch release, newest first, each with the oldest NVIDIA Linux
# driver it runs on (CUDA's minor-version compatibility; Windows drivers number differently but
# share the major version). Check them against https://pytorch.org/get-started/locally/ when
# torch's pin moves.
VARIANTS: tuple[tuple[str, int], ...] = (("cu130", 580), ("cu128", 570), ("cu126", 525))


@dataclass(frozen=True)
class Driver:
    version: str
    gpus: tuple[str, ...] = ()

    @property
    def major(self) -> int:
        match = re.match(r"(\d+)", self.version)
        return int(match.group(1)) if match else 0


def runtime_root() -> Path:
    from .project import user_data_dir

    return user_data_dir() / "gpu-runtime"


def bundled_torch_version() -> str | None:
    """The torch this program ships (e.g. '2.13.0+cpu'), without importing it."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def base_version(version: str | None) -> str | None:
    return version.split("+", 1)[0] if version else None


def runtime_dir(variant: str, version: str | None = None) -> Path:
    return runtime_root() / f"torch-{base_version(version or bundled_torch_version())}-{variant}"


# -- the driver ----------------------------------------------------------------------------------


def driver_present() -> bool:
    """Cheap: is an NVIDIA driver installed at all (no process started)?"""
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists()
    if sys.platform == "win32":
        system = Path(os.environ.get("SystemRoot", r"C:\Windows"), "System32")  # noqa: SIM112 -- Windows spells it so
        return (system / "nvcuda.dll").exists() or (system / "nvidia-smi.exe").exists()
    return False  # macOS: no CUDA


def detect_driver() -> Driver | None:
    """The NVIDIA driver's version and the GPUs it sees, or None."""
    if not driver_present() and shutil.which("nvidia-smi") is None:
        return None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=15, check=True,
            ).stdout
            rows = [line.split(",", 1) for line in out.splitlines() if line.strip()]
            if rows:
                return Driver(rows[0][0].strip(), tuple(r[1].strip() for r in rows if len(r) > 1))
        except (OSError, subprocess.SubprocessError):
            pass
    version_file = Path("/proc/driver/nvidia/version")
    if version_file.exists():
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", version_file.read_text(errors="replace"))
        if match:
            return Driver(match.group(1))
    return Driver("unknown")


def gpu_memory() -> list[tuple[str, int]]:
    """Each NVIDIA GPU's name and total memory in bytes, from nvidia-smi (no torch, so the window
    can ask before a run: core/training/memory.py); [] without a driver or nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=15, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        name, _, mib = line.rpartition(",")
        try:
            found.append((name.strip(), int(float(mib.strip()) * 2**20)))
        except ValueError:
            continue
    return found


def choose_variant(driver: Driver | None) -> str | None:
    """The newest CUDA build the driver runs, or None (no driver, or one too old)."""
    if driver is None:
        return None
    if driver.version == "unknown":
        return VARIANTS[-1][0]
    for variant, oldest_major in VARIANTS:
        if driver.major >= oldest_major:
            return variant
    return None


# -- state ---------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def installed_variants() -> list[str]:
    """Runtimes completely installed for the bundled torch version."""
    root, version = runtime_root(), base_version(bundled_torch_version())
    found = []
    for folder in sorted(root.glob(f"torch-{version}-*")) if root.is_dir() else []:
        ready = _read_json(folder / READY_NAME)
        if ready.get("torch_base") == version:
            found.append(folder.name.rsplit("-", 1)[-1])
    return found


def active_variant() -> str | None:
    return _read_json(runtime_root() / STATE_NAME).get("active")


def set_active(variant: str | None) -> None:
    if variant is not None and variant not in installed_variants():
        raise RuntimeError(f"the {variant} GPU runtime is not installed (installed: {installed_variants() or 'none'})")
    _write_json(runtime_root() / STATE_NAME, {"active": variant})


# -- start-up ------------------------------------------------------------------------------------


def activate() -> Path | None:
    """Put the active GPU runtime first on sys.path, if it should be used; returns its folder.

    Fast and quiet (no process, no torch): the frozen launcher calls it in every process. Any
    doubt means the bundled CPU torch.
    """
    explicit = os.environ.get(PATH_ENV)
    if explicit:
        folder = Path(explicit)
    else:
        if not getattr(sys, "frozen", False) or os.environ.get(CPU_ONLY_ENV, "") not in ("", "0"):
            return None
        try:
            variant = active_variant()
            if not variant or not driver_present():
                return None
            folder = runtime_dir(variant)
            ready = _read_json(folder / READY_NAME)
            if ready.get("torch_base") != base_version(bundled_torch_version()):
                return None
        except Exception:  # noqa: BLE001 -- a broken data folder must never stop the app starting
            return None
    if not folder.is_dir():
        return None
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    os.environ[ACTIVE_ENV] = folder.name
    return folder


# -- installing ----------------------------------------------------------------------------------


def pip_command() -> list[str]:
    """How to run pip from this program: the bundled one when frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable, PIP_FLAG]
    return [sys.executable, "-m", "pip"]


def _pip_has_raw_progress() -> bool:
    """pip 24.1 and later print `Progress N of M` lines (the bundled pip is pinned past that)."""
    try:
        major, minor = (int(part) for part in metadata.version("pip").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (24, 1)


def install(
    variant: str,
    *,
    on_progress: Callable[[int, int, str], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    index_url: str | None = None,
    extra_pip_args: tuple[str, ...] = (),
) -> Path:
    """Download the CUDA torch matching the bundle into the data folder and check it; returns its
    folder. Nothing half-installed is ever used: pip writes into a temporary folder, which is
    checked, trimmed and renamed into place, and only then marked ready. Raises RuntimeError."""
    version = bundled_torch_version()
    if version is None:
        raise RuntimeError("this program has no torch to match")
    base = base_version(version)
    progress = on_progress or (lambda done, total, message: None)
    say = on_line or (lambda line: None)
    final = runtime_dir(variant, version)
    staging = final.with_name(final.name + ".installing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    index_url = index_url or os.environ.get(INDEX_ENV) or INDEX.format(variant=variant)
    extra_pip_args = (*extra_pip_args, *shlex.split(os.environ.get(PIP_ARGS_ENV, "")))
    command = [
        *pip_command(), "install", "--isolated", "--no-input", "--disable-pip-version-check",
        *(("--progress-bar", "raw") if _pip_has_raw_progress() else ()), "--only-binary", ":all:", "--target", str(staging),
        "--index-url", index_url, *extra_pip_args, f"torch=={base}",
    ]
    say("running: " + " ".join(command))
    progress(0, 0, f"downloading torch {base} ({variant})")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert process.stdout is not None
    current = ""
    for line in process.stdout:
        line = line.rstrip()
        match = re.match(r"Progress (\d+) of (\d+)", line)
        if match:
            progress(int(match.group(1)), int(match.group(2)), current)
            continue
        say(line)
        found = re.match(r"\s*(?:Downloading|Collecting)\s+(\S+)", line)
        if found:
            current = f"downloading {Path(found.group(1)).name}"
            progress(0, 0, current)
    if process.wait() != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"pip could not install torch {base} ({variant}); exit code {process.returncode}")
    progress(0, 0, "trimming what the app already has")
    for entry in staging.iterdir():
        if not entry.name.lower().startswith(KEEP_PREFIXES):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    progress(0, 0, "checking the new torch")
    report = check(staging)
    say(f"check: {report}")
    if report.get("version", "").split("+")[0] != base:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"the downloaded torch reports version {report.get('version')!r}, not {base}")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    _write_json(final / READY_NAME, {"torch": report.get("version"), "torch_base": base, "variant": variant,
                                     "cuda_available": report.get("cuda_available"), "devices": report.get("devices"),
                                     "installed": time.strftime("%Y-%m-%d %H:%M:%S")})
    return final


def check(folder: Path) -> dict:
    """Import torch from `folder` in a fresh process of this program; what it reports."""
    env = dict(os.environ, **{PATH_ENV: str(folder)})
    env.pop(CPU_ONLY_ENV, None)
    code = ("import json, torch; print(json.dumps({'version': torch.__version__, 'file': torch.__file__, "
            "'cuda_available': torch.cuda.is_available(), 'devices': [torch.cuda.get_device_name(i) for i in "
            "range(torch.cuda.device_count())] if torch.cuda.is_available() else []}))")
    if getattr(sys, "frozen", False):
        command = [sys.executable, "--gpu-runtime", "probe"]
    else:
        command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(folder)!r}); {code}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"torch from {folder} could not be imported: {(done.stderr or done.stdout).strip()[-500:]}")
    return json.loads(lines[-1])


def probe() -> dict:
    """What this process's torch is (imports torch): `--gpu-runtime probe`."""
    import torch

    available = torch.cuda.is_available()
    return {"version": torch.__version__, "file": torch.__file__, "cuda_available": available,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []}


def remove(variant: str | None = None) -> list[str]:
    """Delete one runtime (or all); the active one is switched back to CPU first."""
    removed = []
    for name in ([variant] if variant else installed_variants()):
        if active_variant() == name:
            set_active(None)
        shutil.rmtree(runtime_dir(name), ignore_errors=True)
        removed.append(name)
    return removed


def status() -> dict:
    driver = detect_driver()
    return {
        "bundled_torch": bundled_torch_version(),
        "frozen": bool(getattr(sys, "frozen", False)),
        "driver": driver.version if driver else None,
        "gpus": list(driver.gpus) if driver else [],
        "recommended_variant": choose_variant(driver),
        "installed": installed_variants(),
        "active": active_variant(),
        "in_use_by_this_process": os.environ.get(ACTIVE_ENV) or "bundled CPU torch",
        "folder": str(runtime_root()),
    }


def command_line(action: str, variant: str | None = None) -> int:
    """`rlhf-workbench --gpu-runtime ACTION [--variant V]`; prints, returns an exit status."""
    try:
        if action == "status":
            print(json.dumps(status(), indent=2))
        elif action == "probe":
            print(json.dumps(probe()))
        elif action == "install":
            chosen = variant or choose_variant(detect_driver())
            if chosen is None:
                print("error: no NVIDIA driver (or one too old for CUDA 12) was found; pass --variant to insist",
                      file=sys.stderr)
                return 1

            def show(done: int, total: int, message: str) -> None:
                print(f"progress {done} {total} {message}", flush=True)

            folder = install(chosen, on_progress=show, on_line=lambda line: print(line, flush=True))
            set_active(chosen)
            ready = _read_json(folder / READY_NAME)
            print(f"installed the {chosen} GPU runtime in {folder} (CUDA available: {ready.get('cuda_available')}); "
                  "it is used from the next training run on", flush=True)
        elif action == "use-cpu":
            set_active(None)
            print("the bundled CPU torch is used from the next run on (the GPU runtime is kept)")
        elif action == "use-gpu":
            chosen = variant or (installed_variants() or [None])[-1]
            if chosen is None:
                print("error: no GPU runtime is installed; run --gpu-runtime install first", file=sys.stderr)
                return 1
            set_active(chosen)
            print(f"the {chosen} GPU runtime is used from the next run on")
        elif action == "remove":
            print(f"removed: {', '.join(remove(variant)) or 'nothing'}")
        else:
            print(f"error: unknown action {action!r}", file=sys.stderr)
            return 2
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
