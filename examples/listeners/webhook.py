"""Post each save (and the end) as JSON to a webhook (Slack-style incoming hooks, your own service).

    [listener.notify]
    class = "examples/listeners/webhook.py:Webhook"
    args = { url = "https://hooks.example.com/T000/B000/XXXX" }   # or set CKPTWATCH_WEBHOOK_URL
    events = ["after_save", "end"]
    on_failure = "retry:3"

The body: ``event``, ``step``, ``checkpoint``, ``dir``, ``layout``,
``run_id``, ``last_step_handled`` (end), ``host`` and a ``text`` line for
chat services. A status other than 2xx, or no answer within ``timeout``
seconds, fails the run (``on_failure = "retry:N"`` tries again). Only the
standard library: nothing to install.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request

from ckptwatch import CheckpointSaverListener


class Webhook(CheckpointSaverListener):
    """POST each after_save and the end as JSON."""

    def __init__(self, url: str | None = None, timeout: float = 10.0, headers: dict | None = None):
        self.url = url or os.environ.get("CKPTWATCH_WEBHOOK_URL")
        if not self.url:
            raise ValueError("no webhook URL: set args = { url = ... } or CKPTWATCH_WEBHOOK_URL")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.host = socket.gethostname()

    def _post(self, event) -> None:
        where = f" step {event.step}" if event.step is not None else ""
        body = {
            "event": event.event, "step": event.step, "checkpoint": event.checkpoint, "dir": event.dir,
            "layout": event.layout, "run_id": event.run_id, "host": self.host,
            "text": f"{self.host}: {event.event}{where} {event.checkpoint or event.dir}",
        }
        if event.event == "end":
            body["last_step_handled"] = event.last_step_handled
        request = urllib.request.Request(self.url, json.dumps(body).encode(), self.headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # raises on 4xx/5xx
            print(f"posted {event.event}{where}: HTTP {response.status}")

    def after_save(self, event):
        self._post(event)

    def end(self, event):
        self._post(event)
