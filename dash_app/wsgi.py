"""WSGI entry for gunicorn (see the Procfile): the app is configured from the environment."""

import logging

from dash_app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = create_app()
server = app.server
