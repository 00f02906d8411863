"""The frozen app's entry point (PyInstaller runs this file; it is not part of the package).

Order matters:
1. The GPU runtime, if the person installed one (core/gpu_runtime.py), goes on sys.path before
   anything imports torch: child processes run this file too, so they get the same torch.
2. multiprocessing.freeze_support() before anything else runs: a spawned child (training, an
   import's reading process, scoring) starts as this executable with `--multiprocessing-fork`
   and must become that child here, never a second window.
   (`--run-bundled-pip ...` runs the bundled pip instead: the GPU runtime's installer uses it.)
3. Then the `rlhf-workbench` command: the window by default, every subcommand, `--selftest`.
"""

import multiprocessing
import sys

from rlhf_workbench.core import gpu_runtime

gpu_runtime.activate()
if sys.argv[1:2] == [gpu_runtime.PIP_FLAG]:
    # The bundled pip, for installing the GPU runtime (core/gpu_runtime.install): no Python needed.
    from pip._internal.cli.main import main as pip_main

    sys.exit(pip_main(sys.argv[2:]))
multiprocessing.freeze_support()

from rlhf_workbench.core.cli import main  # noqa: E402 -- after freeze_support, on purpose

sys.exit(main())
