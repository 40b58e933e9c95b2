"""The one error type the sample-scene builder raises for expected failures."""


class SampleDataError(RuntimeError):
    """A sample-scene step failed for a reason the user can act on (offline, bad cache...)."""
