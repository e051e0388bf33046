"""Page models -> HTML files (pure: returns ``{relative path: text}``; the caller writes them).

Every page is self-contained: CSS and the catalog's search script are inline, plots are inline
SVG, links are relative. So the site opens from ``file://`` with no server and loads nothing
from the network (docs/catalog.md). The search index is a JSON ``<script>`` block in the catalog
page, because a page opened from ``file://`` cannot fetch a file beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from skewless.catalog_site import plots
from skewless.catalog_site.model import (
    Definition,
    FeaturePage,
    SitePages,
    StatsPoint,
    ViewPage,
)
from skewless.freshness import ViewFreshness, format_age

STYLE = """
:root { color-scheme: light; --fg: #1d232b; --muted: #5b6673; --line: #dde2e8; --accent: #1f5fbf;
        --ok: #1b7f3b; --bad: #b3261e; --bg2: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; }
header.top { background: #16202c; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1rem;
             align-items: baseline; }
header.top a { color: #fff; text-decoration: none; font-weight: 600; }
header.top .meta { color: #aeb8c4; font-size: .85rem; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem 1.2rem 3rem; }
h1 { font-size: 1.5rem; margin: .4rem 0; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem;
     border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
.tag { display: inline-block; background: #e8eefc; color: #23408e; border-radius: 3px; padding: 0 .35rem;
       margin: 0 .2rem .1rem 0; font-size: .8rem; }
.kind { display: inline-block; min-width: 5.5rem; font-size: .75rem; text-transform: uppercase;
        color: var(--muted); letter-spacing: .03em; }
.muted { color: var(--muted); } .ok { color: var(--ok); font-weight: 600; }
.bad { color: var(--bad); font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .5rem 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
pre.yaml { background: var(--bg2); border: 1px solid var(--line); padding: .6rem .8rem; overflow-x: auto;
           font-size: .85rem; line-height: 1.4; }
pre.yaml .ln { display: inline-block; width: 3.2em; color: var(--muted); user-select: none; }
.lineage { display: flex; align-items: center; flex-wrap: wrap; gap: .4rem; }
.node { border: 1px solid var(--line); border-radius: 4px; padding: .25rem .6rem; background: #fff; }
.node.self { border-color: var(--accent); font-weight: 600; }
.arrow { color: var(--muted); }
.stack { display: flex; flex-direction: column; gap: .3rem; }
input#search { width: 100%; font-size: 1rem; padding: .5rem .7rem; border: 1px solid #b8c1cc;
               border-radius: 4px; }
ul.results { list-style: none; padding: 0; margin: .6rem 0; }
ul.results li { padding: .35rem 0; border-bottom: 1px solid var(--line); }
ul.results .desc { display: block; color: var(--muted); font-size: .85rem; margin-left: 5.9rem; }
figure.plot { margin: .6rem 0 1.2rem; }
figure.plot svg { max-width: 100%; height: auto; }
.warning { background: #fff4e5; border: 1px solid #f0c36d; padding: .4rem .7rem; border-radius: 4px; }
"""

SEARCH_SCRIPT = """
(function () {
  var index = JSON.parse(document.getElementById("search-index").textContent);
  var input = document.getElementById("search");
  var list = document.getElementById("results");
  var count = document.getElementById("result-count");
  index.forEach(function (e) {
    e.haystack = [e.kind, e.name, e.title, e.view || "", e.owner || "", e.tags.join(" "),
                  e.description || ""].join(" ").toLowerCase();
  });
  function matches(entry, term) {
    var colon = term.indexOf(":");
    var key = colon > 0 ? term.slice(0, colon) : "", value = term.slice(colon + 1);
    if (key === "owner") return (entry.owner || "").toLowerCase().indexOf(value) >= 0;
    if (key === "tag") return entry.tags.indexOf(value) >= 0;
    if (key === "kind") return entry.kind === value;
    return entry.haystack.indexOf(term) >= 0;
  }
  function render() {
    var terms = input.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var found = index.filter(function (e) {
      return terms.every(function (t) { return matches(e, t); });
    });
    list.replaceChildren();
    found.forEach(function (e) {
      var item = document.createElement("li");
      item.className = "result kind-" + e.kind;
      var kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = e.kind.replace("_", "-");
      item.appendChild(kind);
      var name = document.createElement(e.url ? "a" : "strong");
      if (e.url) name.href = e.url;
      name.textContent = e.title;
      item.appendChild(name);
      if (e.owner) {
        var owner = document.createElement("span");
        owner.className = "muted owner";
        owner.textContent = " \\u00b7 " + e.owner + " ";
        item.appendChild(owner);
      }
      e.tags.forEach(function (t) {
        var tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = t;
        item.appendChild(tag);
      });
      if (e.description) {
        var desc = document.createElement("span");
        desc.className = "desc";
        desc.textContent = e.description;
        item.appendChild(desc);
      }
      list.appendChild(item);
    });
    count.textContent = found.length + " of " + index.length;
  }
  input.addEventListener("input", render);
  var hash = decodeURIComponent(location.hash.replace(/^#q=/, ""));
  if (location.hash.indexOf("#q=") === 0) input.value = hash;
  render();
})();
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _page(title: str, body: str, root: str, generated: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)} - skewless catalog</title><style>{STYLE}</style></head>\n<body>"
        f'<header class="top"><a href="{root}index.html">skewless catalog</a>'
        f'<span class="meta">generated {_e(generated)}</span></header>\n'
        f"<main>{body}</main></body></html>\n"
    )


def _tags(tags: Iterable[str]) -> str:
    return "".join(f'<span class="tag">{_e(t)}</span>' for t in tags) or '<span class="muted">none</span>'


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _text(value: str | None) -> str:
    return _e(value) if value else '<span class="muted">none</span>'


def search_index_json(pages: SitePages) -> str:
    """The catalog's search index, safe inside a ``<script>`` element."""
    text = json.dumps([e.to_json() for e in pages.entries], sort_keys=True, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_catalog(pages: SitePages) -> str:
    views = "".join(
        f'<tr><td><a href="{_e(v.url)}">{_e(v.view.name)}</a></td><td>v{v.view.version}</td>'
        f"<td>{_e(v.view.kind)}</td><td>{len(v.features)}</td><td>{_text(v.owner)}</td>"
        f"<td>{_tags(v.tags)}</td><td>{_freshness_cell(v.freshness)}</td></tr>"
        for v in pages.views
    )
    problems = ""
    if pages.problems:
        problems = '<div class="warning"><strong>Not everything could be read:</strong><ul>'
        problems += "".join(f"<li>{_e(p)}</li>" for p in pages.problems) + "</ul></div>"
    body = f"""
<h1>Feature catalog</h1>
<p class="muted">Registry <code>{_e(pages.registry_hash[:12])}</code>: {len(pages.views)} views,
{len(pages.features)} features. Search names, owners, tags and descriptions; <code>owner:NAME</code>,
<code>tag:NAME</code> and <code>kind:feature</code> narrow the search.</p>
{problems}
<input id="search" type="search" placeholder="Search views, features, owners, tags" autocomplete="off"
 aria-label="Search the catalog">
<p class="muted"><span id="result-count"></span> entries</p>
<ul id="results" class="results"></ul>
<h2>Views</h2>
<table><thead><tr><th>view</th><th>version</th><th>kind</th><th>features</th><th>owner</th><th>tags</th>
<th>freshness</th></tr></thead><tbody>{views}</tbody></table>
<script type="application/json" id="search-index">{search_index_json(pages)}</script>
<script>{SEARCH_SCRIPT}</script>
"""
    return _page("Catalog", body, "", pages.generated_at.isoformat(timespec="seconds"))


def _freshness_cell(freshness: ViewFreshness | None) -> str:
    if freshness is None:
        return '<span class="muted">unknown</span>'
    if freshness.sla is None:
        return f'<span class="muted">no SLA</span> ({_e(freshness.offline.describe())})'
    state = '<span class="ok">within SLA</span>' if freshness.ok else '<span class="bad">SLA broken</span>'
    return f"{state} ({_e(format_age(freshness.sla))})"


def _definition(definition: Definition | None) -> str:
    if definition is None:
        return '<p class="muted">Not found in the definitions folder this site was built with.</p>'
    warning = ""
    if not definition.matches_deployed:
        warning = (
            '<p class="warning">The definitions folder differs from the deployed registry for this object:'
            " the YAML below is not what is deployed (run <code>skewless plan</code>).</p>"
        )
    lines = "".join(
        f'<span class="ln">{definition.line + i}</span>{_e(text)}\n'
        for i, text in enumerate(definition.text.splitlines())
    )
    return f'{warning}<p><code class="where">{_e(definition.where)}</code></p><pre class="yaml">{lines}</pre>'


def _lineage(page: ViewPage) -> str:
    lineage = page.lineage
    right = [f'<span class="node">service {_e(s)}</span>' for s in lineage.services]
    right += [f'<span class="node">on-demand {_e(o)}</span>' for o in lineage.on_demand]
    after = (
        f'<span class="arrow">&rarr;</span><span class="stack">{"".join(right)}</span>'
        if right
        else '<span class="arrow">&rarr;</span><span class="muted">no service uses it yet</span>'
    )
    return (
        f'<div class="lineage"><span class="node">source {_e(lineage.source)}</span>'
        f'<span class="arrow">&rarr;</span><span class="node self">view {_e(lineage.view)}</span>'
        f'{after}</div><p class="muted">keyed by entity {_e(lineage.entity)}</p>'
    )


def _freshness_section(freshness: ViewFreshness | None) -> str:
    if freshness is None:
        return '<p class="muted">Freshness was not computed for this build.</p>'
    sla = format_age(freshness.sla) if freshness.sla is not None else "none set"
    if freshness.sla is None:
        state = '<span class="muted">no SLA (add <code>freshness:</code> to the view)</span>'
    elif freshness.ok:
        state = '<span class="ok">within SLA</span>'
    else:
        state = f'<span class="bad">SLA broken</span>: {_e(freshness.problem() or "")}'
    return _facts(
        [
            ("SLA", _e(sla)),
            ("state", state),
            ("offline", _e(freshness.offline.describe().removeprefix("offline "))),
            ("online", _e(freshness.online.describe().removeprefix("online "))),
            ("as of", _e(freshness.now.isoformat(timespec="seconds"))),
        ]
    )


def _result(success: bool) -> str:
    return '<span class="ok">passed</span>' if success else '<span class="bad">failed</span>'


def render_view(page: ViewPage, generated: str) -> str:
    view = page.view
    ranges = ", ".join(_e(r) for r in page.committed) or '<span class="muted">nothing committed</span>'
    gaps = ", ".join(_e(g) for g in page.gaps) or "none"
    reports = "".join(
        f"<tr><td>{_e(r.created_at.isoformat(timespec='seconds'))}</td><td>{_e(r.start)}"
        f"{'' if r.start == r.end else ' .. ' + _e(r.end)}</td><td>{r.rows}</td><td>{r.evaluated}</td>"
        f"<td>{r.failed}</td><td>{_result(r.success)}</td>"
        f'<td><a href="../{_e(r.link)}">report</a></td></tr>'
        for r in page.reports
    )
    reports_table = (
        "<table><thead><tr><th>validated at</th><th>ds</th><th>rows</th><th>checks</th><th>failed</th>"
        f"<th>result</th><th></th></tr></thead><tbody>{reports}</tbody></table>"
        if reports
        else '<p class="muted">No validation reports kept.</p>'
    )
    features = "".join(
        f'<tr><td><a href="../{_e(f.url)}">{_e(f.name)}</a></td><td>{_e(f.dtype)}</td>'
        f"<td>{_e(f.computed)}</td>"
        f"<td>{_text(f.owner)}</td><td>{_tags(f.tags)}</td><td>{_text(f.description)}</td></tr>"
        for f in page.features
    )
    facts = [
        ("kind", _e(view.kind)),
        ("entity", f"{_e(view.entity)} ({_e(', '.join(view.key_names))})"),
        ("source", _e(view.source.name)),
        ("owner", _text(page.owner)),
        ("tags", _tags(page.tags)),
        ("ttl", _e(format_age_seconds(view.ttl_seconds))),
        ("table", f"<code>{_e(view.table)}</code>"),
    ]
    body = f"""
<h1>{_e(view.name)} <span class="muted">v{view.version}</span></h1>
<p>{_text(page.description)}</p>
{_facts(facts)}
<h2>Lineage</h2>{_lineage(page)}
<h2>Features</h2>
<table><thead><tr><th>feature</th><th>dtype</th><th>computed as</th><th>owner</th><th>tags</th>
<th>description</th></tr></thead><tbody>{features}</tbody></table>
<h2>Committed partitions</h2>{_facts([("ds ranges", ranges), ("gaps", gaps)])}
<h2>Freshness</h2>{_freshness_section(page.freshness)}
<h2>Validation history</h2>{reports_table}
<h2>Definition</h2>{_definition(page.definition)}
"""
    return _page(view.name, body, "../", generated)


def format_age_seconds(seconds: int) -> str:
    from datetime import timedelta

    return format_age(timedelta(seconds=seconds))


def _latest_table(series: Sequence[StatsPoint]) -> str:
    if not series:
        return '<p class="muted">No statistics recorded yet (they are written after each run).</p>'
    last = series[-1]

    def number(value: float | None, percent: bool = False) -> str:
        if value is None:
            return '<span class="muted">-</span>'
        return f"{100 * value:.2f}%" if percent else f"{value:.6g}"

    cells: list[tuple[str, Any]] = [
        ("ds", _e(last.ds)),
        ("rows", last.rows),
        ("null rate", number(last.null_rate, percent=True)),
        ("mean", number(last.mean)),
        ("min", number(last.min)),
        ("p50", number(last.p50)),
        ("p90", number(last.p90)),
        ("p99", number(last.p99)),
        ("max", number(last.max)),
        ("PSI", number(last.psi)),
        ("drift", _e(last.drift_status or "-")),
    ]
    head = "".join(f"<th>{k}</th>" for k, _ in cells)
    row = "".join(f"<td>{v}</td>" for _, v in cells)
    return f'<table class="latest"><thead><tr>{head}</tr></thead><tbody><tr>{row}</tr></tbody></table>'


def _plot(svg: str | None, name: str, empty: str) -> str:
    if svg is None:
        return f'<p class="muted plot-missing" data-plot="{name}">{_e(empty)}</p>'
    return f'<figure class="plot" data-plot="{name}">{svg}</figure>'


def render_feature(page: FeaturePage, generated: str) -> str:
    salt = f"{page.view}.{page.feature.name}"
    series = page.series
    plots_html = ""
    if page.numeric:
        plots_html += _plot(
            plots.quantiles_svg(series, f"{salt}.q"), "quantiles", "No quantiles recorded yet."
        )
    plots_html += _plot(plots.null_rate_svg(series, f"{salt}.n"), "null-rate", "No null rates recorded yet.")
    if page.numeric:
        plots_html += _plot(
            plots.drift_svg(series, page.drift_warn, page.drift_fail, f"{salt}.psi", page.online_drift),
            "drift",
            "No PSI yet (drift needs committed reference days before a ds).",
        )
    plots_html += _plot(
        plots.distribution_svg(page.latest_values, page.numeric, page.latest_ds, f"{salt}.d"),
        "distribution",
        "No values in the latest committed partition to show.",
    )
    owner = _text(page.owner) + (' <span class="muted">(the view\'s)</span>' if page.owner_inherited else "")
    services = ", ".join(_e(s) for s in page.services) or '<span class="muted">none</span>'
    facts = [
        ("view", f'<a href="../{_e(page.view_url)}">{_e(page.view)}</a> v{page.version}'),
        ("dtype", _e(page.feature.dtype)),
        ("computed as", _e(page.computed)),
        ("owner", owner),
        ("tags", _tags(page.tags)),
        ("services", services),
    ]
    body = f"""
<h1>{_e(page.view)}:{_e(page.feature.name)}</h1>
<p>{_text(page.description)}</p>
{_facts(facts)}
<h2>Latest statistics</h2>{_latest_table(series)}
<h2>Over time</h2>{plots_html}
"""
    return _page(f"{page.view}:{page.feature.name}", body, "../", generated)


def render_site(pages: SitePages) -> dict[str, str]:
    """Every page of the site, keyed by its path relative to the site's root."""
    generated = pages.generated_at.isoformat(timespec="seconds")
    out = {"index.html": render_catalog(pages)}
    for view in pages.views:
        out[view.url] = render_view(view, generated)
    for feature in pages.features:
        out[feature.url] = render_feature(feature, generated)
    return out
