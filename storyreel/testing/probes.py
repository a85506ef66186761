"""Probes tests put on models: count how often a module runs."""


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
