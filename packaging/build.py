"""Build the self-contained app folder: `python packaging/build.py` (what `make package` runs).

1. A virtual environment of the build's own (build/package-venv), made once with nothing but the
   app, its pinned dependencies and PyInstaller (`pip install -c constraints.txt ".[package]"`):
   no test tools in the bundle, and the app installed as a wheel, which PyInstaller can follow
   (it cannot follow setuptools' editable-install finder). Made again when pyproject.toml or
   constraints.txt change; the app itself is reinstalled on every build.
2. PyInstaller with packaging/rlhf-workbench.spec: dist/rlhf-workbench/ (Linux, Windows), plus
   dist/RLHF Workbench.app on macOS. Work files go to build/pyinstaller.
3. On Linux, the desktop entry, the icon and install-desktop-entry.sh are copied next to the
   program; a BUILD-INFO.json says what was built, with what, how big it is and how long it took.

Options: --archive (also a .tar.gz / .zip of the folder), --selftest (run the built app's
--selftest afterwards), --python PATH (the interpreter for the venv; default: this one).
Works the same on Linux, macOS and Windows (the CI workflows in .github/workflows call it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
DIST = ROOT / "dist"
VENV = BUILD / "package-venv"
SPEC = ROOT / "packaging" / "rlhf-workbench.spec"
NAME = "rlhf-workbench"
IS_WIN, IS_MAC = sys.platform == "win32", sys.platform == "darwin"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if IS_WIN else "bin/python")


def run(*command: str | Path, **kwargs) -> None:
    print("+ " + " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=ROOT, **kwargs)


def _inputs_digest() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:16]


def ensure_venv(python: str) -> Path:
    stamp = VENV / ".package-deps"
    digest = _inputs_digest()
    if not (venv_python().exists() and stamp.exists() and stamp.read_text().strip() == digest):
        shutil.rmtree(VENV, ignore_errors=True)
        run(python, "-m", "venv", VENV)
        pip = (venv_python(), "-m", "pip", "--disable-pip-version-check")
        run(*pip, "install", "-q", "-c", "constraints.txt", "pip", "setuptools")
        run(*pip, "install", "-q", "-c", "constraints.txt", ".[package]")
        stamp.write_text(digest)
    else:
        # The app's own code changes between builds: reinstall it (only it).
        for stale in [BUILD / "lib", *BUILD.glob("bdist.*")]:
            shutil.rmtree(stale, ignore_errors=True)  # setuptools' leftovers would go into the wheel
        run(venv_python(), "-m", "pip", "--disable-pip-version-check", "install", "-q", "--no-deps",
            "--force-reinstall", ".")
    return venv_python()


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter for the build's venv")
    parser.add_argument("--archive", action="store_true", help="also pack the folder (.tar.gz, or .zip on Windows)")
    parser.add_argument("--selftest", action="store_true", help="run the built app's --selftest afterwards")
    args = parser.parse_args(argv)

    started = time.monotonic()
    python = ensure_venv(args.python)
    deps_s = time.monotonic() - started
    for stale in [BUILD / "lib", *BUILD.glob("bdist.*")]:
        shutil.rmtree(stale, ignore_errors=True)
    frozen_started = time.monotonic()
    run(python, "-m", "PyInstaller", SPEC, "--noconfirm", "--clean", "--log-level", "WARN",
        "--distpath", DIST, "--workpath", BUILD / "pyinstaller")
    pyinstaller_s = time.monotonic() - frozen_started

    app_dir = DIST / NAME
    program = app_dir / (NAME + (".exe" if IS_WIN else ""))
    if not program.exists():
        print(f"error: {program} was not built", file=sys.stderr)
        return 1
    if sys.platform.startswith("linux"):
        for name in ("rlhf-workbench.desktop", "rlhf-workbench.svg"):
            shutil.copy2(ROOT / "resources" / name, app_dir / name)
        shutil.copy2(ROOT / "packaging" / "linux" / "install-desktop-entry.sh", app_dir / "install-desktop-entry.sh")

    version = subprocess.run([str(venv_python()), "-c", "from rlhf_workbench.core import __version__ as v; print(v)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    info = {
        "name": NAME,
        "version": version,
        "platform": f"{sys.platform}-{platform.machine()}",
        "python": platform.python_version(),
        "size_bytes": folder_size(app_dir),
        "files": sum(1 for f in app_dir.rglob("*") if f.is_file()),
        "build_seconds": {"dependencies": round(deps_s, 1), "pyinstaller": round(pyinstaller_s, 1)},
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (app_dir / "BUILD-INFO.json").write_text(json.dumps(info, indent=2) + "\n")

    if args.archive:
        base = DIST / f"{NAME}-{version}-{info['platform']}"
        if IS_MAC:
            source_root, source = DIST, "RLHF Workbench.app"
        else:
            source_root, source = DIST, NAME
        archive = shutil.make_archive(str(base), "zip" if (IS_WIN or IS_MAC) else "gztar", source_root, source)
        print(f"archive: {archive} ({Path(archive).stat().st_size / 2**20:.0f} MiB)")

    print(f"built {program}: {info['size_bytes'] / 2**20:.0f} MiB in {info['files']:,} files; "
          f"dependencies {deps_s:.0f} s, PyInstaller {pyinstaller_s:.0f} s")
    if args.selftest:
        command = [str(app_dir / (NAME + "-cli.exe")) if IS_WIN else str(program), "--selftest"]
        print("+ " + " ".join(command), flush=True)
        env = dict(os.environ)
        return subprocess.run(command, env=env).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
