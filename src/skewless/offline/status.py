"""``skewless status``: what each view's offline table is out of date with, per view (no Spark).

Two things: committed partitions whose raw input changed after they were computed
(docs/semantics.md, "Late and corrected data"), and freshness against the view's SLA, offline
and online (docs/semantics.md, "Freshness"; :mod:`skewless.freshness`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from skewless.freshness import ViewFreshness, gather_freshness
from skewless.manifest import Manifest, ViewSpec
from skewless.offline import fingerprints
from skewless.plan.planner import DateRange, StaleRange
from skewless.runtime.settings import Settings


@dataclass(frozen=True)
class StatusReport:
    view: str
    version: int
    computed: DateRange | None
    """``ds`` range computed so far (None: nothing yet)."""
    stale: tuple[StaleRange, ...] = ()
    freshness: ViewFreshness | None = None

    @property
    def ok(self) -> bool:
        return not self.stale and (self.freshness is None or self.freshness.ok)

    def lines(self) -> list[str]:
        where = f"ds {self.computed} computed" if self.computed else "nothing computed yet"
        head = f"{self.view} v{self.version}: {where}"
        fresh = [f"  {self.freshness.describe()}"] if self.freshness is not None else []
        if not self.stale:
            return [f"{head}; up to date with its raw input", *fresh]
        return [f"{head}; STALE:", *(f"  {item.describe(self.view)}" for item in self.stale), *fresh]


def view_status(settings: Settings, view: ViewSpec) -> StatusReport:
    """Stale ranges of one view (no freshness: :func:`status` adds it)."""
    state = fingerprints.load_state(settings, view)
    current = fingerprints.current_fingerprints(settings, view, state.known)
    stale = fingerprints.stale_days(state, current)
    window = view.max_window_days if view.kind == "aggregation" else 0
    return StatusReport(
        view.name, view.version, state.computed, fingerprints.stale_ranges(stale, window, state.computed)
    )


def status(
    settings: Settings, manifest: Manifest, views: Iterable[str] | None = None, now: datetime | None = None
) -> list[StatusReport]:
    """One report per view (all views of ``manifest`` by default, in name order), with its
    freshness at ``now`` (default: the current time)."""
    names = sorted(manifest.views) if views is None else list(views)
    reports = [view_status(settings, manifest.view(name)) for name in names]
    committed = {r.view: None if r.computed is None else r.computed.end for r in reports}
    fresh = gather_freshness(settings, manifest, names, now, committed=committed)
    return [replace(report, freshness=item) for report, item in zip(reports, fresh, strict=True)]
