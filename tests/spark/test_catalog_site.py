"""``skewless docs`` in a real browser: Debian's chromium driven by Playwright over ``file://``.

A demo-like registry is backfilled for real (Spark, Delta, the Great Expectations gate, the
statistics table), with one day left out as a gap and a later nightly run; then the site is built
through the CLI and opened headless. The catalog search must find features by owner, a feature
page must show its plots (SVG with a non-zero size), and the browser must log no console error
and request nothing outside ``file://``. Screenshots of the catalog and of a feature page are kept
under ``test-artifacts/catalog-site/`` (git-ignored; see docs/catalog.md).
"""

from __future__ import annotations

import random
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from skewless.cli import main
from skewless.orchestration import run_range
from skewless.runtime.settings import Settings, ValidationSettings
from tests.helpers import deploy, write_parquet

# Two real runs with the validation gate and statistics: about 9 minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.spark, pytest.mark.timeout(1800)]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "catalog-site"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

TREE = {
    "entities.yaml": """
        entity:
          name: merchant
          join_keys: {merchant_id: string}
          description: A merchant accepting card payments.
          owner: payments-core
          tags: [payments]
    """,
    "payments/transactions.yaml": """
        source:
          name: transactions
          path: transactions
          format: parquet
          timestamp: ts
          description: Card transactions as they arrive from the gateway.
          owner: data-platform@example.com
          tags: [raw, pci]
          columns: {merchant_id: string, amount: float64, status: string, ts: timestamp}
    """,
    "payments/merchant_txn.yaml": """
        # Fraud: merchant transaction velocity.
        view:
          name: merchant_txn
          version: 1
          kind: aggregation
          entity: merchant
          source: transactions
          filter: "status = 'completed'"
          ttl: 2d
          freshness: 36h
          description: Transaction velocity and amounts per merchant.
          owner: fraud-ml
          tags: [fraud, velocity]
          features:
            - {name: txn_count_7d, function: count, window: 7d, description: Completed in 7 days.}
            - name: amount_sum_7d
              function: sum
              column: amount
              window: 7d
              owner: finance-analytics
              tags: [money]
            - {name: amount_avg_7d, function: avg, column: amount, window: 7d}
          expectations:
            - {feature: txn_count_7d, between: [0, null]}
    """,
    "services/models.yaml": """
        service:
          name: fraud_model_v1
          description: Real-time card fraud scoring.
          owner: fraud-ml
          tags: [fraud]
          features: [merchant_txn:txn_count_7d, merchant_txn:amount_avg_7d]
    """,
}
RAW = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("status", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
    ]
)
FIRST = date(2024, 3, 1)
DAYS = [FIRST + timedelta(days=i) for i in range(10)]
GAP = DAYS[8]


def _transactions(seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for offset, day in enumerate(DAYS):
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for _ in range(60):
            scale = 4.5 if offset >= 8 else 3.5  # the last days drift upwards
            rows.append(
                {
                    "merchant_id": f"m{rng.randrange(25):03d}",
                    "amount": round(rng.lognormvariate(scale, 0.8), 2),
                    "status": "completed" if rng.random() < 0.95 else "declined",
                    "ts": start + timedelta(seconds=rng.uniform(0, 86_399)),
                }
            )
    return rows


@pytest.fixture(scope="module")
def site(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings]:
    root = tmp_path_factory.mktemp("catalog")
    settings, manifest = deploy(root, TREE)
    settings = settings.model_copy(update={"validation": ValidationSettings(drift_min_values=1)})
    write_parquet(Path(settings.data_root) / "transactions", _transactions(), RAW)
    run_range(spark, settings, manifest, "merchant_txn", DAYS[0], DAYS[7], raise_on_drift=False)
    run_range(spark, settings, manifest, "merchant_txn", DAYS[9], DAYS[9], raise_on_drift=False)
    conf = root / "conf.yaml"
    conf.write_text(
        f"defs: {settings.defs}\ndata_root: {settings.data_root}\noffline_root: {settings.offline_root}\n"
        "redis_url: redis://127.0.0.1:1/0\nvalidation:\n  drift_min_values: 1\n"
    )
    out = root / "site"
    assert main(["--conf", str(conf), "docs", "--out", str(out)]) == 0
    return out, settings


def test_the_site_is_complete_and_self_contained(site: tuple[Path, Settings]) -> None:
    out, _ = site
    view = (out / "views" / "merchant_txn.html").read_text()
    assert f"{DAYS[0]} .. {DAYS[7]}, {DAYS[9]} .. {DAYS[9]}" in view  # committed ranges
    assert f"gaps</dt><dd>{GAP} .. {GAP}" in view
    assert "payments/merchant_txn.yaml:2" in view  # the document starts under its comment line
    assert "source transactions" in view  # lineage
    # the data is from 2024: the offline side is far past the SLA, the online side unknown (no Redis)
    assert '<span class="bad">SLA broken</span>: merchant_txn: freshness SLA 1d 12h broken' in view
    assert "service fraud_model_v1" in view
    reports = sorted((out / "reports" / "merchant_txn").glob("*.json"))
    assert len(reports) == 2  # the backfill's and the nightly run's
    for report in reports:
        assert f'href="../reports/merchant_txn/{report.name}"' in view
    for page in out.rglob("*.html"):
        text = page.read_text()
        assert "http://" not in text.replace("http://www.w3.org/", "")  # SVG namespaces only
        assert "https://" not in text
        assert "<?xml" not in text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_search_plots_and_no_network_in_a_real_browser(site: tuple[Path, Settings], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out, _ = site
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                       else route.abort())  # fmt: skip
            page.goto((out / "index.html").as_uri())

            page.fill("#search", "finance-analytics")
            found = page.locator("#results li")
            assert found.count() == 1
            assert found.first.get_attribute("class") == "result kind-feature"
            assert "merchant_txn:amount_sum_7d" in found.first.inner_text()

            page.fill("#search", "owner:fraud-ml kind:feature")
            titles = sorted(page.locator("#results li a").all_inner_texts())
            # amount_sum_7d names its own owner; the others inherit the view's
            assert titles == ["merchant_txn:amount_avg_7d", "merchant_txn:txn_count_7d"]
            page.screenshot(path=str(tmp_path / "catalog.png"), full_page=True)

            page.click("text=merchant_txn:txn_count_7d")
            page.wait_for_load_state("load")
            assert page.url.endswith("features/merchant_txn.txn_count_7d.html")
            for name in ("quantiles", "null-rate", "drift", "distribution"):
                svg = page.locator(f'figure[data-plot="{name}"] svg')
                assert svg.count() == 1, name
                box = svg.bounding_box()
                assert box is not None, name
                assert box["width"] > 100, (name, box)
                assert box["height"] > 50, (name, box)
            page.screenshot(path=str(tmp_path / "feature.png"), full_page=True)

            page.goto((out / "views" / "merchant_txn.html").as_uri())
            assert page.locator("pre.yaml").count() == 1
        finally:
            browser.close()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for shot in ("catalog.png", "feature.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
        shutil.copy(tmp_path / shot, ARTIFACTS / shot)
    assert errors == []
    assert requests
    assert all(url.startswith("file://") for url in requests), requests
