"""The JupyterLab jobs panel's server side: a Jupyter server extension that lists every
job of this user (the shared store, the targets file's queue servers), pushes changes
to the page, and carries out the panel's actions with qnb's Python API.

Enabled when qnb is installed (``etc/jupyter/jupyter_server_config.d/qnb.json``); the
page's half is the prebuilt JupyterLab extension ``qnb-jobs`` (``labextension/``).
"""

from __future__ import annotations

from ._feed import JobFeed
from ._handlers import setup_handlers


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "qnb.jobs_panel"}]


def _load_jupyter_server_extension(server_app) -> None:
    feed = JobFeed()
    setup_handlers(server_app.web_app, feed)
    server_app.log.info("qnb jobs panel: serving every job of this user at /qnb-jobs/")


# Older Jupyter servers look for this name.
load_jupyter_server_extension = _load_jupyter_server_extension
