"""Freshness of each view against its SLA (docs/semantics.md, "Freshness").

Offline freshness is ``now - B(ds)`` for the latest computed ``ds`` of the view's table;
online freshness is ``now - B(ds)`` for the latest ``ds`` that ``materialize`` published
(:mod:`skewless.online.published`). A view with a ``freshness`` SLA breaks it when either age
exceeds the SLA, when nothing was computed or published yet, or when the online marker cannot
be read.

:func:`view_freshness` is pure (the time comes in as ``now``); :func:`gather_freshness` reads
the committed ranges and the online markers, then calls it. ``skewless status``, the nightly
DAG's ``freshness`` task and the docs site all use these two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from skewless import semantics
from skewless.manifest import Manifest, ViewSpec

if TYPE_CHECKING:
    from skewless.runtime.settings import Settings

Side = Literal["offline", "online"]


def format_age(value: timedelta) -> str:
    """``timedelta(days=1, hours=2, minutes=5)`` -> ``'1d 2h 5m'`` (whole minutes, rounded down)."""
    minutes = int(value.total_seconds() // 60)
    sign, minutes = ("-", -minutes) if minutes < 0 else ("", minutes)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{mins}m"] * bool(mins)
    return sign + (" ".join(parts) or "0m")


@dataclass(frozen=True)
class SideFreshness:
    """One side (offline or online) of a view's freshness at ``now``."""

    side: Side
    ds: date | None
    """Latest computed (offline) or published (online) ``ds``; None: none yet, or unknown."""
    age: timedelta | None
    """``now - B(ds)``; None when ``ds`` is None."""
    error: str | None = None
    """Why the side could not be read (e.g. Redis unreachable)."""

    @property
    def boundary(self) -> datetime | None:
        return None if self.ds is None else semantics.boundary(self.ds)

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.side} unknown ({self.error})"
        if self.ds is None or self.age is None:
            verb = "computed" if self.side == "offline" else "published"
            return f"{self.side} never {verb}"
        return f"{self.side} {format_age(self.age)} (ds {self.ds})"

    def to_json(self) -> dict[str, Any]:
        return {
            "ds": None if self.ds is None else self.ds.isoformat(),
            "boundary": None if self.boundary is None else self.boundary.isoformat(),
            "age_seconds": None if self.age is None else int(self.age.total_seconds()),
            "error": self.error,
        }


@dataclass(frozen=True)
class ViewFreshness:
    view: str
    version: int
    sla: timedelta | None
    """The view's ``freshness`` SLA; None: no SLA (reported, never broken)."""
    now: datetime
    offline: SideFreshness
    online: SideFreshness

    def over(self, side: SideFreshness) -> timedelta | None:
        """How far ``side`` is past the SLA (None: within it, or no SLA; ``timedelta.max``: no age)."""
        if self.sla is None:
            return None
        if side.age is None:
            return timedelta.max
        return side.age - self.sla if side.age > self.sla else None

    @property
    def broken(self) -> tuple[SideFreshness, ...]:
        return tuple(side for side in (self.offline, self.online) if self.over(side) is not None)

    @property
    def ok(self) -> bool:
        return not self.broken

    def describe(self) -> str:
        """``freshness (SLA 26h): offline 20h (ds ...), online 20h (ds ...)``."""
        sla = f"SLA {format_age(self.sla)}" if self.sla is not None else "no SLA"
        return f"freshness ({sla}): {self.offline.describe()}, {self.online.describe()}"

    def problem(self) -> str | None:
        """One line naming the view and how far each broken side is past the SLA; None when ok."""
        if self.ok or self.sla is None:
            return None
        parts = []
        for side in self.broken:
            over = self.over(side)
            if side.age is None or over is None:
                parts.append(side.describe())
            else:
                parts.append(f"{side.side} {format_age(side.age)} old, {format_age(over)} over")
        return f"{self.view}: freshness SLA {format_age(self.sla)} broken: {'; '.join(parts)}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (the docs site reads this)."""
        return {
            "view": self.view,
            "version": self.version,
            "sla_seconds": None if self.sla is None else int(self.sla.total_seconds()),
            "now": self.now.isoformat(),
            "offline": self.offline.to_json(),
            "online": self.online.to_json(),
            "ok": self.ok,
            "problem": self.problem(),
        }


def side_freshness(side: Side, ds: date | None, now: datetime, error: str | None = None) -> SideFreshness:
    if error is not None or ds is None:
        return SideFreshness(side, None if error else ds, None, error)
    return SideFreshness(side, ds, semantics.as_utc(now) - semantics.boundary(ds))


def view_freshness(
    manifest: Manifest,
    committed: Mapping[str, date | None],
    published: Mapping[str, date | None],
    now: datetime,
    *,
    views: Iterable[str] | None = None,
    online_error: str | None = None,
) -> list[ViewFreshness]:
    """Freshness of each view (all of ``manifest`` by default, in name order) at ``now``.

    ``committed`` and ``published`` map a view name to its latest computed / published ``ds``
    (missing or None: none). ``online_error`` marks every online side unknown.
    """
    now = semantics.as_utc(now)
    names = sorted(manifest.views) if views is None else list(views)
    out = []
    for name in names:
        view = manifest.view(name)
        sla = None if view.freshness_seconds is None else timedelta(seconds=view.freshness_seconds)
        out.append(
            ViewFreshness(
                view.name,
                view.version,
                sla,
                now,
                side_freshness("offline", committed.get(name), now),
                side_freshness("online", published.get(name), now, online_error),
            )
        )
    return out


# --- I/O ------------------------------------------------------------------------------------


def committed_ds(settings: Settings, view: ViewSpec) -> date | None:
    """The latest ``ds`` computed into the view's table (the range ``skewless status`` reports)."""
    from skewless.offline.fingerprints import load_state

    computed = load_state(settings, view).computed
    return None if computed is None else computed.end


def published_ds(settings: Settings, views: Iterable[ViewSpec]) -> tuple[dict[str, date | None], str | None]:
    """The online markers of ``views``, or ``({}, reason)`` when Redis cannot be read."""
    from skewless.errors import OnlineStoreError
    from skewless.online.published import read_published

    try:
        return read_published(settings.redis_url, views), None
    except OnlineStoreError as exc:
        return {}, str(exc)


def check_freshness(
    settings: Settings, manifest: Manifest, views: Iterable[str] | None = None, now: datetime | None = None
) -> list[ViewFreshness]:
    """:func:`gather_freshness`, raising :class:`FreshnessBroken` (one line per view) when an SLA is broken.

    What the nightly DAG's ``freshness`` task runs.
    """
    from skewless.errors import FreshnessBroken

    report = gather_freshness(settings, manifest, views, now)
    problems = [problem for item in report if (problem := item.problem()) is not None]
    if problems:
        raise FreshnessBroken("\n".join(problems))
    return report


def gather_freshness(
    settings: Settings,
    manifest: Manifest,
    views: Iterable[str] | None = None,
    now: datetime | None = None,
    *,
    committed: Mapping[str, date | None] | None = None,
) -> list[ViewFreshness]:
    """Read the committed ranges (unless given) and the online markers; then :func:`view_freshness`."""
    names = sorted(manifest.views) if views is None else list(views)
    specs = [manifest.view(name) for name in names]
    if committed is None:
        committed = {view.name: committed_ds(settings, view) for view in specs}
    published, error = published_ds(settings, specs)
    return view_freshness(
        manifest, committed, published, now or datetime.now(UTC), views=names, online_error=error
    )
