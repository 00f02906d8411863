"""The Qt application: windows, views and widgets. It talks to `rlhf_workbench.core` only.

Nothing here is imported by the core (an import-linter contract enforces it), and nothing here
imports torch or transformers at start-up: the window must open fast.
"""
