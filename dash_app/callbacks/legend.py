"""Legend entries the user hid stay hidden: the page keeps them by chart and trace uid, and every update applies them.

Plotly's own memory of a legend click is lost when a trace is replaced, so the browser reports what is hidden
after each click (LEGEND_JS) and the server sends every trace with its `visible` set from that report.
"""

import json

from dash_app.callbacks.snapshots import OVERVIEW_FIGURES, TOOL_FIGURES

# Charts whose legend the user can click.
LEGEND_CHARTS = ("inuse-chart", "borrow-chart", "overage-chart", "failure-chart", "tool-failure-chart")
# At most this many hidden entries are kept per chart: a chart shows eleven series, so more is no report of ours.
MAX_HIDDEN = 64

# Reads which traces are hidden in every legend chart as drawn, after any legend click or double-click.
LEGEND_JS = """
function() {
    var hidden = {};
    var ids = IDS;
    for (var i = 0; i < ids.length; i++) {
        var id = ids[i];
        var gd = document.querySelector('#' + id + ' .js-plotly-plot');
        if (!gd || !gd.data) { continue; }
        hidden[id] = gd.data.filter(function (t) { return t.visible === 'legendonly' && t.uid; })
                            .map(function (t) { return t.uid; });
    }
    return hidden;
}
""".replace("IDS", json.dumps(list(LEGEND_CHARTS)))


def hidden_in(hidden: object, graph_id: str) -> frozenset[str]:
    """Return the uids hidden in `graph_id` from the page's report, ignoring anything that is not one."""
    if graph_id not in OVERVIEW_FIGURES + TOOL_FIGURES or not isinstance(hidden, dict):
        return frozenset()
    uids = hidden.get(graph_id)
    if not isinstance(uids, list):
        return frozenset()
    return frozenset(uid for uid in uids[:MAX_HIDDEN] if isinstance(uid, str))
