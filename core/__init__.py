"""The headless core of RLHF Workbench: projects, the store, formats, the run machinery, the training
toolkit and methods, the CLI. Never imports Qt. core/README.md maps it."""


def __getattr__(name: str):
    # The version is read from the installed metadata only when asked for: importlib.metadata
    # costs ~35 ms, and every training child imports this package without needing it.
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("rlhf-workbench")
        except metadata.PackageNotFoundError:  # running from a source tree that was never installed
            version = "0.0.0+source"
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
