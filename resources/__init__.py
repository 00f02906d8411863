"""Files the app loads at run time (icon, desktop entry, screenshot).

A package, not a plain folder, so that `importlib.resources` finds these files the same way
from a source tree, an editable install, a wheel and a frozen app; see `rlhf_workbench.app.resources`.
"""
