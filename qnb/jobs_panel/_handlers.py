"""HTTP handlers of the jobs panel, under ``<base_url>/qnb-jobs/``: thin over the feed
(reading) and the qnb API (acting). Jupyter's own login guards every one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .._errors import QnbError
from ._feed import JobFeed

#: The longest a page's long poll waits for a change.
MAX_WAIT_SECONDS = 25.0
# Actions block (a request to another process waits for its answer): on threads of
# their own, never on the server's loop.
_actions_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="qnb-panel")


def _actions():
    # Imports Cirq (the qnb API): on the first action only. By its full name, not
    # "from . import": that would import this package from inside it.
    import qnb.jobs_panel._actions as actions

    return actions


class _Base(APIHandler):
    @property
    def feed(self) -> JobFeed:
        return self.settings["qnb_jobs_feed"]

    def answer_error(self, exc: BaseException) -> None:
        if isinstance(exc, QnbError):
            status, code = 409, getattr(exc, "code", None) or type(exc).__name__
        elif isinstance(exc, ValueError):
            status, code = 400, "bad_request"
        else:
            self.log.exception("qnb jobs panel: an action failed")
            status, code = 500, type(exc).__name__
        self.set_status(status)
        self.finish(json.dumps({"message": str(exc), "code": code, "error": type(exc).__name__}))


class JobsHandler(_Base):
    @tornado.web.authenticated
    async def get(self):
        self.finish(json.dumps(await self.feed.snapshot()))


class UpdatesHandler(_Base):
    @tornado.web.authenticated
    async def get(self):
        try:
            after = int(self.get_argument("after", "0"))
            wait = min(max(float(self.get_argument("timeout", "20")), 0.0), MAX_WAIT_SECONDS)
        except ValueError as exc:
            return self.answer_error(ValueError(f"after and timeout are numbers: {exc}"))
        self.finish(json.dumps(await self.feed.updates(after, wait)))


class ActionHandler(_Base):
    @tornado.web.authenticated
    async def post(self, job_id: str, action: str):
        row = self.feed.row(job_id)
        target = row["target"] if row else None
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                _actions_pool, lambda: _actions().act(job_id, action, target=target)
            )
        except Exception as exc:  # noqa: BLE001 - every failure is answered, with its words
            return self.answer_error(exc)
        await self.feed.refresh()
        self.finish(json.dumps(outcome))


class ResultsHandler(_Base):
    @tornado.web.authenticated
    async def get(self, job_id: str):
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(_actions_pool, lambda: _actions().results(job_id))
        except Exception as exc:  # noqa: BLE001
            return self.answer_error(exc)
        self.finish(json.dumps(found))


def setup_handlers(web_app, feed: JobFeed) -> None:
    web_app.settings["qnb_jobs_feed"] = feed
    base = url_path_join(web_app.settings["base_url"], "qnb-jobs")
    job = r"(?P<job_id>[0-9A-Za-z_.\-]{1,128})"
    web_app.add_handlers(".*$", [
        (url_path_join(base, "jobs"), JobsHandler),
        (url_path_join(base, "updates"), UpdatesHandler),
        (url_path_join(base, "jobs", job, "results"), ResultsHandler),
        (url_path_join(base, "jobs", job, r"(?P<action>cancel|resubmit|remove|front)"), ActionHandler),
    ])  # fmt: skip
