"""The page's vendored files (Bootstrap's CSS, plotly.js's cartesian bundle), the chunks it links, and /healthz."""

import html
import json
from typing import Any

import dash
from flask import Blueprint

from dash_app.compression import COMPONENT_SUITES, asset_query, fingerprinted
from dash_app.state import get_state

# Bootstrap 5.3.8's own bootstrap.min.css (MIT, its header kept) and its source map, as Bootstrap-Flask 2.6.0 shipped
# them: Dash links every stylesheet in assets/ in name order, so it comes before style.css, which builds on it.
BOOTSTRAP_CSS = "/assets/bootstrap.min.css"
# plotly.js's "cartesian" partial bundle, as npm's plotly.js-cartesian-dist-min ships it (MIT, its header kept), of the
# plotly.js version plotly.py bundles: it draws every trace type the figures use (bar, scatter, heatmap, pie) and is a
# third of the full bundle's size (455 KB against 1.29 MB in brotli), most of a first visit's bytes.
PLOTLY_BUNDLE = "bundles/plotly-cartesian.min.js"
# Where dcc.Graph fetches plotly.js from (dash-renderer sets the URL): Dash serves plotly.py's full bundle there.
PLOTLY_FIXED = "plotly/package_data/plotly.min.js"
# assets/ subfolders Dash must not link in the page: their files load only when something asks for them.
UNLINKED_ASSETS = ["bundles"]
# The chunks the page's components load on demand (package, file), which the Capacity view's page links: AG Grid's
# grid, dcc's Graph, Dropdown and DatePickerRange (its range picker).
PAGE_CHUNKS = (
    ("dash_ag_grid", "async-community.js"),
    ("dash", "dcc/async-graph.js"),
    ("dash", "dcc/async-dropdown.js"),
    ("dash", "dcc/async-datepicker.js"),
)

bp = Blueprint("site", __name__)


def plotly_script(app: dash.Dash) -> str:
    """Return the live view's page's script tag for plotly.js's bundle, run as soon as it arrives (async).

    dcc.Graph asks for plotly.js only once the layout and its own chunk are in, and takes window.Plotly when it is
    already there: fetched beside the page's other scripts, the bundle is ready by then and the first chart is drawn
    about a third of a second sooner. Were it ever still on its way, dcc.Graph would load the same URL (a cache hit):
    the bundle would run twice, nothing worse.
    """
    return f'<script src="{html.escape(_plotly_src(app))}" async="async"></script>'


# dcc.Graph loads plotly.js unless window.Plotly is set, and waits for it through Promise.resolve(window.Plotly || ...):
# a thenable there holds every Graph until it resolves. The Capacity view's page loads the bundle itself once the
# grid shows rows or a user's page shows (else after LATE_PLOTLY_MS: an empty grid), and plotly.js then puts its own
# Plotly in place of the thenable. tests/test_capacity_browser.py fails if dcc stops reading window.Plotly so.
_LATE_PLOTLY_JS = """<script>
(function () {
  var url = %s, started = false, waiting = [];
  function load() {
    if (started) { return; }
    started = true;
    var script = document.createElement("script");
    script.src = url;
    script.async = true;
    script.onload = function () { waiting.splice(0).forEach(function (w) { w[0](); }); };
    script.onerror = function (e) {
      window.Plotly = undefined;  // a chart drawn later loads plotly.js itself, as dcc.Graph does anywhere else
      waiting.splice(0).forEach(function (w) { w[1](e); });
    };
    document.head.appendChild(script);
  }
  window.Plotly = {then: function (resolve, reject) { waiting.push([resolve, reject]); }};
  function shown() {
    var user = document.getElementById("capacity-user-section");  // a user's page has no grid
    return document.querySelector("#capacity-table .ag-row") || (user && user.offsetParent !== null);
  }
  (function watch() {
    if (started) { return; }
    if (shown()) { load(); } else { requestAnimationFrame(watch); }
  })();
  setTimeout(load, %d);
})();
</script>"""
LATE_PLOTLY_MS = 3000


def late_plotly_script(app: dash.Dash) -> str:
    """Return the Capacity view's page's script that loads plotly.js's bundle once the grid shows rows.

    Compiling the bundle (1.5 MB) takes the main thread for a few tenths of a second: linked in the page it ran
    before the page's own scripts and put off the grid's first request; loaded when the charts first asked for it, it
    ran between the grid's rows coming and their being drawn. The grid is what a person waits for on this page.
    """
    return _LATE_PLOTLY_JS % (json.dumps(_plotly_src(app)).replace("</", "<\\/"), LATE_PLOTLY_MS)


def _plotly_src(app: dash.Dash) -> str:
    """Return the fingerprinted URL of plotly.js's bundle, the one dcc.Graph's fixed URL is sent on to."""
    return app.get_asset_url(PLOTLY_BUNDLE) + asset_query(app, PLOTLY_BUNDLE)


def chunk_scripts(app: dash.Dash) -> str:
    """Return the script tags, each run as soon as it arrives (async), of the components' chunks (PAGE_CHUNKS).

    A component asks for its chunk only once the layout is drawn, by a fixed URL the server redirects to the
    fingerprinted one (compression.py): two requests, answered while the first callbacks run. Linked in the page, a
    chunk comes beside the page's other scripts, straight from the browser's cache once seen, and has installed itself
    when its component asks for it, so no request is made then.
    """
    tags = []
    for package, path in PAGE_CHUNKS:
        name = fingerprinted(package, path)
        if name is None:  # a component package without this chunk: its component loads what it has, as before
            continue
        src = f"{app.config.requests_pathname_prefix}{COMPONENT_SUITES}{package}/{name}"
        tags.append(f'<script src="{html.escape(src)}" async="async"></script>')
    return "\n".join(tags)


@bp.get("/healthz")
def healthz() -> dict[str, Any] | tuple[dict[str, Any], int]:
    shared = get_state().shared
    if shared is None:
        return {"status": "ok"}
    # With --redis: reads still serve from memory, but writes fail and nothing new arrives while Redis is away.
    body = {"status": "ok" if shared.healthy() else "degraded", **shared.status()}
    return body, 200 if shared.healthy() else 503
