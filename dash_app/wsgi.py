"""WSGI entry for gunicorn (see the Procfile): the app is configured from the environment.

Serve it with the Procfile's worker class, dash_app.worker.HeadTimeoutWorker (it reads DASH_APP_HEADER_TIMEOUT
too): plain gthread lets clients that hold half a request take every thread.
"""

import logging

from dash_app.serve import served_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

server = served_app()
