"""WSGI entry for gunicorn (see the Procfile): the app is configured from the environment.

Serve it with the Procfile's worker class, dash_app.worker.HeadTimeoutWorker (it reads DASH_APP_HEADER_TIMEOUT
too): plain gthread lets clients that hold half a request take every thread.
"""

import atexit
import logging

from dash_app import create_app
from dash_app.dash_routes import warm_on_first_page
from dash_app.state import get_state

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = create_app()
server = app.server
# When the worker exits, stop the services so the SQLite writer flushes what is queued.
atexit.register(get_state(app).stop)
# The analysis process reads the history once the page is first asked for, not at the first query.
warm_on_first_page(app, get_state(app).analytics.warm)
