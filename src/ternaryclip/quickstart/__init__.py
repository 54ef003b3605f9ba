"""The offline quickstart: the whole method on the bundled teacher and synthetic data, in minutes.

``run`` trains, packs and measures; ``goals`` checks the numbers against the goals; ``render``
writes the markdown and the plot.  See :mod:`.run` for the steps.
"""

from .goals import GOALS, check_goals
from .render import markdown_report, markdown_table, plot_report
from .run import QuickstartOptions, measure_latency, run_quickstart, summary_metrics

__all__ = [
    "GOALS",
    "QuickstartOptions",
    "check_goals",
    "markdown_report",
    "markdown_table",
    "measure_latency",
    "plot_report",
    "run_quickstart",
    "summary_metrics",
]
