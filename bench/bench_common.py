"""What the benchmarks share: profiling one side of a comparison."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys


class profiled:
    """cProfile and torch.profiler around the training call, printed to stderr (the parent shows it)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        if self.enabled:
            import torch.profiler

            self.cprofile = cProfile.Profile()
            self.torch = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.torch.__enter__()
            self.cprofile.enable()
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        self.cprofile.disable()
        self.torch.__exit__(*exc)
        text = io.StringIO()
        pstats.Stats(self.cprofile, stream=text).sort_stats("cumulative").print_stats(40)
        pstats.Stats(self.cprofile, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue(), file=sys.stderr)
        print(self.torch.key_averages().table(sort_by="self_cpu_time_total", row_limit=30), file=sys.stderr)
        return False
