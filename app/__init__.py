"""The Qt application: windows, views, widgets. Talks to rlhf_workbench.core only."""
