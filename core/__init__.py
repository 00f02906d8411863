"""The headless core of RLHF Workbench: projects, the store, formats, jobs. Never imports Qt."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("rlhf-workbench")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
