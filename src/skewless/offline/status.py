"""``skewless status``: what each view's offline table is out of date with, per view (no Spark).

Today one thing: committed partitions whose raw input changed after they were computed
(docs/semantics.md, "Late and corrected data"). A :class:`StatusReport` per view leaves room
for more (e.g. freshness against an SLA).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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

    @property
    def ok(self) -> bool:
        return not self.stale

    def lines(self) -> list[str]:
        where = f"ds {self.computed} computed" if self.computed else "nothing computed yet"
        head = f"{self.view} v{self.version}: {where}"
        if self.ok:
            return [f"{head}; up to date with its raw input"]
        return [f"{head}; STALE:", *(f"  {item.describe(self.view)}" for item in self.stale)]


def view_status(settings: Settings, view: ViewSpec) -> StatusReport:
    state = fingerprints.load_state(settings, view)
    current = fingerprints.current_fingerprints(settings, view, state.known)
    stale = fingerprints.stale_days(state, current)
    window = view.max_window_days if view.kind == "aggregation" else 0
    return StatusReport(
        view.name, view.version, state.computed, fingerprints.stale_ranges(stale, window, state.computed)
    )


def status(settings: Settings, manifest: Manifest, views: Iterable[str] | None = None) -> list[StatusReport]:
    """One report per view (all views of ``manifest`` by default, in name order)."""
    names = sorted(manifest.views) if views is None else list(views)
    return [view_status(settings, manifest.view(name)) for name in names]
