"""The Capacity view's browser-side callbacks: which view shows, the address bar, a clicked row, the picked tool's row."""

# Shows the view the address names at once (the live view's part, the Capacity view's, the live controls), before any
# answer from the server: while the Capacity view's first query runs, the page already is that view.
VIEW_JS = """
function(pathname) {
    const capacity = typeof pathname === 'string' && pathname.replace(/\\/+$/, '').endsWith('/capacity');
    const shown = {}, hidden = {display: 'none'};
    return capacity ? [hidden, shown, hidden] : [shown, hidden, shown];
}
"""

# Writes the Capacity view's query into the address bar in place, while the address is the Capacity view's.
CAPACITY_QUERY_JS = """
function(query) {
    if (typeof query === 'string' && window.location.pathname.endsWith('/capacity') && window.location.search !== query) {
        window.history.replaceState(window.history.state, '', window.location.pathname + query);
    }
    return window.dash_clientside.no_update;
}
"""

# A click on a tool's row picks the tool at once, in the browser (no round trip before the tool's own callback), and
# brings the tool's card into view, as little scrolled as it takes. The totals row is no tool's: the grid's row model
# holds only the tools' rows.
ROW_CLICK_JS = """
function(clicked) {
    const ns = window.dash_clientside;
    const tool = clicked && clicked.rowId;
    let api = null;
    try { api = window.dash_ag_grid.getApi('capacity-table'); } catch (e) { api = null; }
    if (typeof tool !== 'string' || !api || !api.getRowNode(tool)) {
        return ns.no_update;
    }
    const card = document.getElementById('capacity-tool-card');
    if (card) {
        card.scrollIntoView({block: 'nearest', behavior: 'instant'});
    }
    return tool;
}
"""

# The picked tool's row is selected (highlighted: through the grid's selectedRows, which the grid keeps when its rows
# are sent again) and scrolled into the grid's view, however the tool was picked (the address, the picker, a click).
# The grid may not have its rows yet, so the row is looked for again for a few seconds. A picked tool also clears the
# message about an address that named none.
SHOW_ROW_JS = """
function(tool, _rows) {
    const ns = window.dash_clientside;
    if (typeof tool !== 'string' || !tool) {
        return [ns.no_update, []];
    }
    let tries = 0;
    const show = function() {
        let api = null;
        try { api = window.dash_ag_grid.getApi('capacity-table'); } catch (e) { api = null; }
        const node = api ? api.getRowNode(tool) : null;
        if (node) {
            // Scrolled to the middle of the grid when it is not in view already (wholly), else left where it is.
            const view = api.getVerticalPixelRange();
            if (node.rowTop < view.top || node.rowTop + node.rowHeight > view.bottom) {
                api.ensureNodeVisible(node, 'middle');
            }
        } else if (++tries < 40) {
            setTimeout(show, 150);
        }
    };
    show();
    return ['', {ids: [tool]}];
}
"""

# A link in the page to /capacity?tool=X (a recommendation's) opens the tool, as a row's click does, and brings the
# tool's card into view (it is above the list: its top at the top of the screen, below the page's header). The
# address's other changes (the view's own, written in place) are not heard: they do not tell the page.
TOOL_FROM_ADDRESS_JS = """
function(search, pathname) {
    const ns = window.dash_clientside;
    const tool = new URLSearchParams(search || '').get('tool');
    if (!tool || typeof pathname !== 'string' || !pathname.endsWith('/capacity')) {
        return ns.no_update;
    }
    const card = document.getElementById('capacity-tool-card');
    if (card) {
        card.scrollIntoView({block: 'start', behavior: 'instant'});
    }
    return tool;
}
"""
