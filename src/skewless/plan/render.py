"""Render a :class:`Plan` as terminal text or as Markdown for a pull-request comment."""

from __future__ import annotations

import re

from skewless.plan.planner import Backfill, Plan

_SIGN = {"added": "+", "changed": "~", "removed": "-"}


def _backfill_line(backfill: Backfill) -> str:
    where = (
        f"partitions {backfill.partitions}"
        if backfill.partitions
        else "no committed partitions yet: choose the history to build"
    )
    return f"{backfill.view} -> {backfill.table}: {backfill.reason}; {where}"


def _md(text: str) -> str:
    """``text`` as one line of Markdown: newlines (a multi-line filter) folded, no HTML tags."""
    return re.sub(r"\s*\n\s*", " ", text.strip()).replace("<", "&lt;")


def _cell(text: str) -> str:
    """``text`` inside a Markdown table cell: one line, pipes escaped."""
    return _md(text).replace("|", "\\|")


def _stale_lines(plan: Plan) -> list[str]:
    return [f"{view}: {item.describe(view)}" for view, item in plan.stale]


def render_text(plan: Plan) -> str:
    stale = [
        "",
        "Stale (raw input changed after it was computed):",
        *(f"  * {s}" for s in _stale_lines(plan)),
    ]
    if not plan.has_changes:
        text = "No changes: the feature definitions match the deployed registry."
        return "\n".join([text, *stale]) if plan.stale else text
    lines = [
        f"Plan: {plan.old_hash[:12] if plan.old_hash else '(nothing deployed)'} -> {plan.new_hash[:12]}",
        "",
    ]
    for change in plan.changes:
        lines.append(f"  {_SIGN[change.action]} {change.kind} {change.name} ({change.action})")
        lines += [f"      {detail}" for detail in change.details]
    if plan.backfills:
        lines += ["", "Backfills needed:"]
        lines += [f"  * {_backfill_line(b)}" for b in plan.backfills]
    if plan.stale:
        lines += stale
    if plan.breaking:
        lines += ["", "BREAKING (refused; bump the view's version):"]
        lines += [f"  ! {reason}" for reason in plan.breaking]
    return "\n".join(lines)


def render_markdown(plan: Plan) -> str:
    stale = ["", "**Stale (raw input changed after it was computed)**", ""]
    stale += [f"- {_md(line)}" for line in _stale_lines(plan)]
    if not plan.has_changes:
        text = "### skewless plan\n\nNo changes: the feature definitions match the deployed registry.\n"
        return text + "\n".join(stale) + "\n" if plan.stale else text
    old = f"`{plan.old_hash[:12]}`" if plan.old_hash else "nothing deployed"
    lines = ["### skewless plan", "", f"Registry {old} -> `{plan.new_hash[:12]}`", ""]
    if plan.breaking:
        lines += ["> [!CAUTION]", "> **Refused: breaking changes without a version bump**"]
        lines += [f"> - {_md(reason)}" for reason in plan.breaking]
        lines.append("")
    lines += ["| | kind | name | details |", "|---|---|---|---|"]
    for change in plan.changes:
        details = "<br>".join(_cell(d) for d in change.details) or change.action
        lines.append(f"| {_SIGN[change.action]} | {change.kind} | `{change.name}` | {details} |")
    if plan.backfills:
        lines += ["", "**Backfills needed**", ""]
        lines += [f"- {_md(_backfill_line(b))}" for b in plan.backfills]
    if plan.stale:
        lines += stale
    return "\n".join(lines) + "\n"
