"""Probes tests and benchmarks put on models and processes: how often a module runs, how much memory a run takes."""


class ForwardCounter:
    """Wraps a module's forward and counts calls; `restore()` puts the original back."""

    def __init__(self, module):
        self.calls, self.module, self.original = 0, module, module.forward

        def counted(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        module.forward = counted

    def restore(self):
        self.module.forward = self.original


def peak_torch_bytes(run) -> int:
    """Peak of torch's CPU allocations (bytes above the start) while `run()` runs, from the profiler's
    allocation events (deterministic, unlike process RSS)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    total = peak = 0
    for event in events:
        total += event.nbytes()
        peak = max(peak, total)
    return peak


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB. VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec, so a
    child started from a big parent would report the parent's size (its forked pages) as its own."""
    import resource

    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
