"""The main window's tabs. Each view has `set_project(project | None)`; the window calls it
whenever the open project changes, so a view never holds on to a closed project."""
