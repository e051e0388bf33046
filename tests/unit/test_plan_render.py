"""Rendering a plan: terminal text and Markdown for a pull-request comment."""

from __future__ import annotations

import re
from datetime import date

from skewless.plan import Backfill, Change, DateRange, Plan, render_markdown, render_text

OLD = "a" * 64
NEW = "b" * 64

PLAN = Plan(
    old_hash=OLD,
    new_hash=NEW,
    changes=(
        Change("source", "transactions", "changed", ("path: raw/a -> raw/b",)),
        Change("view", "merchant_txn", "changed", ("feature amount_avg_7d: added", "ttl_seconds: 1 -> 2")),
        Change("view", "orders", "changed", ("filter: a || b -> a",)),
        Change("view", "customer_stats", "removed", ("table views/customer_stats/v1 is kept",)),
        Change("service", "churn", "added"),
    ),
    breaking=("view orders v1: feature n changed meaning (filter: a || b -> a) without a version bump",),
    backfills=(
        Backfill("merchant_txn", "views/merchant_txn/v1", "feature added: amount_avg_7d", None),
        Backfill(
            "sessions",
            "views/sessions/v2",
            "version 1 -> 2",
            DateRange(date(2024, 1, 1), date(2024, 3, 31)),
        ),
    ),
)


def _cells(row: str) -> list[str]:
    """Cells of a Markdown table row, splitting on unescaped pipes only."""
    assert row.startswith("|")
    assert row.endswith("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_markdown_has_one_table_row_per_change() -> None:
    text = render_markdown(PLAN)
    lines = text.splitlines()
    header = lines.index("| | kind | name | details |")
    assert lines[header + 1] == "|---|---|---|---|"
    rows = [_cells(line) for line in lines[header + 2 :] if line.startswith("|")]
    assert len(rows) == len(PLAN.changes)
    assert all(len(row) == 4 for row in rows)  # escaped pipes in details keep the columns aligned
    assert rows[0] == ["~", "source", "`transactions`", "path: raw/a -> raw/b"]
    assert rows[1] == ["~", "view", "`merchant_txn`", "feature amount_avg_7d: added<br>ttl_seconds: 1 -> 2"]
    assert rows[2][3] == r"filter: a \|\| b -> a"
    assert rows[3][:3] == ["-", "view", "`customer_stats`"]
    assert rows[4] == ["+", "service", "`churn`", "added"]


def test_markdown_breaking_section_and_backfills() -> None:
    text = render_markdown(PLAN)
    assert text.startswith("### skewless plan\n")
    assert f"`{OLD[:12]}` -> `{NEW[:12]}`" in text
    assert "> **Refused: breaking changes without a version bump**" in text
    assert f"> - {PLAN.breaking[0]}" in text
    # the warning comes before the table, so a reviewer sees it first
    assert text.index("Refused") < text.index("| | kind |")
    backfills = text.split("**Backfills needed**", 1)[1]
    assert (
        "- merchant_txn -> views/merchant_txn/v1: feature added: amount_avg_7d; "
        "no committed partitions yet: choose the history to build"
    ) in backfills
    assert "- sessions -> views/sessions/v2: version 1 -> 2; partitions 2024-01-01 .. 2024-03-31" in backfills


def test_markdown_without_breaking_or_backfills_has_neither_section() -> None:
    compatible = Plan(old_hash=None, new_hash=NEW, changes=(Change("service", "churn", "added"),))
    text = render_markdown(compatible)
    assert "nothing deployed" in text
    assert "Refused" not in text
    assert "CAUTION" not in text
    assert "Backfills" not in text
    assert "| + | service | `churn` | added |" in text


def test_markdown_no_changes() -> None:
    text = render_markdown(Plan(old_hash=NEW, new_hash=NEW))
    assert "No changes" in text
    assert "|" not in text


def test_text_lists_changes_backfills_and_breaking() -> None:
    text = render_text(PLAN)
    lines = text.splitlines()
    assert lines[0] == f"Plan: {OLD[:12]} -> {NEW[:12]}"
    assert "  ~ view merchant_txn (changed)" in lines
    assert "      feature amount_avg_7d: added" in lines
    assert "  - view customer_stats (removed)" in lines
    assert "  + service churn (added)" in lines
    assert lines.index("Backfills needed:") < lines.index("BREAKING (refused; bump the view's version):")
    assert "  * sessions -> views/sessions/v2: version 1 -> 2; partitions 2024-01-01 .. 2024-03-31" in lines
    assert f"  ! {PLAN.breaking[0]}" in lines


def test_text_no_changes_and_nothing_deployed() -> None:
    assert render_text(Plan(old_hash=NEW, new_hash=NEW)).startswith("No changes")
    first = render_text(Plan(old_hash=None, new_hash=NEW, changes=(Change("entity", "m", "added"),)))
    assert first.splitlines()[0] == f"Plan: (nothing deployed) -> {NEW[:12]}"
    assert "BREAKING" not in first
    assert "Backfills" not in first


def test_markdown_keeps_multiline_filters_and_comparisons_inside_their_row() -> None:
    change = Change("view", "orders", "changed", ("filter: amount < 10\nand status = 'ok' -> (none)",))
    reason = (
        "view orders v1: feature n changed meaning (filter: amount <b\n -> (none)) without a version bump"
    )
    text = render_markdown(Plan(old_hash=OLD, new_hash=NEW, changes=(change,), breaking=(reason,)))
    lines = text.splitlines()
    (row,) = [line for line in lines if line.startswith("| ~")]
    assert _cells(row)[3] == "filter: amount &lt; 10 and status = 'ok' -> (none)"
    quoted = (
        "> - view orders v1: feature n changed meaning (filter: amount &lt;b -> (none))"
        " without a version bump"
    )
    assert quoted in lines
