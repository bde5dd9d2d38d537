"""Windowing that only batches writes: correctness never depends on it."""
from __future__ import annotations

import math

import apache_beam as beam
from apache_beam.transforms import trigger, window

# Late data is never dropped: a day of lateness is kept open, and every pane
# is applied on its own (the merge is order-independent).
ALLOWED_LATENESS_SECONDS = 24 * 3600


class WindowChanges(beam.PTransform):
    """Fixed windows with early firings and discarding panes."""

    def __init__(self, window_seconds: float):
        super().__init__()
        self.window_seconds = window_seconds

    def expand(self, pcoll):
        return pcoll | "FixedWindows" >> beam.WindowInto(
            window.FixedWindows(self.window_seconds),
            trigger=trigger.AfterWatermark(
                early=trigger.AfterProcessingTime(max(1, math.ceil(self.window_seconds))),
                late=trigger.AfterCount(1)),
            allowed_lateness=ALLOWED_LATENESS_SECONDS,
            accumulation_mode=trigger.AccumulationMode.DISCARDING)
