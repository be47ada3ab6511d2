"""The accuracy-vs-latency report: build (or reuse) every artifact, measure accuracy and latency.

    python -m benchmarks.report                                   # the default model on its own test split

One module per phase: ``build`` (artifacts, through the converters' Python API), ``measure``
(accuracy, latency, the typed :class:`~benchmarks.report.measure.Row`), ``render`` (markdown, JSON),
``plot`` (the accuracy-vs-latency plot); ``cli`` is the command line and the order of the phases.
"""
from benchmarks.report.cli import main, make_run_dir, run_report

__all__ = ["main", "make_run_dir", "run_report"]
