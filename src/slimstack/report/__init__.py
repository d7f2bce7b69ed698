"""Run reports: a JSON document and a self-contained HTML page rendered from it."""

from ._report import build_report, pareto_front, pick_best, record_actions, render_html, write_report

__all__ = ["build_report", "pareto_front", "pick_best", "record_actions", "render_html", "write_report"]
