"""Diff feature definitions against the deployed registry (pure)."""

from skewless.plan.planner import Backfill, Change, DateRange, Plan, StaleRange, plan
from skewless.plan.render import render_markdown, render_text

__all__ = ["Backfill", "Change", "DateRange", "Plan", "StaleRange", "plan", "render_markdown", "render_text"]
