"""skewless: batch feature platform.

``from skewless import FeatureStore`` is the Python API (docs/python-api.md); it is imported on
first use, so ``import skewless`` stays cheap for the command line, the DAGs and the executors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skewless.store import FeatureService, FeatureStore

__all__ = ["FeatureService", "FeatureStore"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from skewless import store

        return getattr(store, name)
    raise AttributeError(f"module 'skewless' has no attribute {name!r}")
