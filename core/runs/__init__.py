"""Running work: one way, in a few well-named parts.

    work.py       Work: a function (by import path) with its arguments, and the run it records,
                  if any; `execute` runs it here and now and ends it in Finished or Failed
    records.py    a run's records: start_run / resume_run / RunContext, its folder, its lock, the
                  Recorder that persists its figures from the process executing it
    thread.py     ThreadRunner: Work in a thread of this process (the CLI, the ranks of a torchrun
                  launch, the GUI's database tasks, tests)
    child.py      ChildRunner: Work in a spawned child process, supervised (training and model
                  work from the GUI); ProcessRunner, the supervision it shares with
    torchrun.py   TorchrunRunner: a training run on several local GPUs, launched as a child
    terminal.py   run_from_terminal: a training method's run from a terminal, recorded as the app
                  records it (and under torchrun, one rank's part)

Every runner has the same face: it starts at once; `on_event(event)` is called from its own
thread with every event, the last one Finished or Failed (also in `result`); `stop()` asks
politely, `kill()` insists, `join(timeout)` waits, `done` says whether it has ended. The app's one
Qt adapter (app/tasks.py) turns any runner's events into Qt signals on the GUI thread.

One vocabulary: work reports Progress (and Metric, Sample, Log, Checkpoint) events into its
`sink` and polls `stop()`; it fails by raising WorkbenchError (message and hint; JobFailed adds the
step), and work that was stopped and kept nothing raises Stopped.

Nothing here imports torch or Qt; importing the package imports none of its modules.
"""
