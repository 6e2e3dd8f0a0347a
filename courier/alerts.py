"""Alerts: missing required files, failed or overlong runs, failing sources, sent to sinks.

    [alerts]
    sinks = [
      { type = "log" },                                        # the default: a warning log line
      { type = "webhook", url = "${ALERT_WEBHOOK_URL}" },      # POST the alert as JSON
      { type = "command", command = ["/usr/local/bin/page", "--team", "data"] },
    ]

A command gets the alert as JSON on stdin and as COURIER_ALERT_* environment variables. A sink
never raises: a failed delivery is logged and recorded with the alert (courier.alerts).
Webhook URLs are secrets (they often carry a token), so only their host is ever logged.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from courier.config.models import (
    AlertsSection,
    CommandSinkConfig,
    LogSinkConfig,
    WebhookSinkConfig,
)
from courier.errors import CourierError
from courier.windows import Window, iso_utc

log = logging.getLogger("courier.alerts")

TAlertKind = Literal["missing_files", "failed", "overlong", "gave_up", "source_failed"]


class AlertDeliveryError(CourierError):
    """A sink could not deliver an alert (recorded with the alert, never raised to a run)."""


@dataclass
class Alert:
    kind: TAlertKind
    message: str
    courier: str | None = None
    group: str | None = None
    group_run_id: str | None = None
    run_id: str | None = None
    window: Window | None = None
    details: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    alert_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    deliveries: dict[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """What sinks receive (and `--json` prints)."""
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "message": self.message,
            "courier": self.courier,
            "group": self.group,
            "group_run_id": self.group_run_id,
            "run_id": self.run_id,
            "window": self.window.as_dict() if self.window else None,
            "details": self.details,
            "created_at": iso_utc(self.created_at),
        }

    def row(self) -> dict[str, Any]:
        """A courier.alerts row."""
        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "group_name": self.group,
            "group_run_id": self.group_run_id,
            "courier": self.courier,
            "run_id": self.run_id,
            "window_start": self.window.start if self.window else None,
            "window_end": self.window.end if self.window else None,
            "message": self.message,
            "details": self.details,
            "deliveries": self.deliveries,
            "created_at": self.created_at,
        }


class AlertSink(Protocol):
    def describe(self) -> str: ...

    def send(self, alert: Alert) -> None: ...


class LogSink:
    def describe(self) -> str:
        return "log"

    def send(self, alert: Alert) -> None:
        log.warning("ALERT %s: %s", alert.kind, alert.message)


class RedactSecrets(logging.Filter):
    """httpx logs request URLs at INFO (--debug shows them); webhook URLs are secrets."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets and isinstance(record.args, tuple):
            args = []
            for arg in record.args:
                text = str(arg)
                for secret in self.secrets:
                    text = text.replace(secret, hidden(secret))
                args.append(text if text != str(arg) else arg)
            record.args = tuple(args)
        return True


def hidden(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/***"


REDACT = RedactSecrets()
logging.getLogger("httpx").addFilter(REDACT)


class WebhookSink:
    """POST the alert payload as JSON; any 2xx is a delivery."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 10.0):
        self.url = url
        self.headers = headers or {}
        self.timeout = timeout
        REDACT.secrets.add(url)

    def describe(self) -> str:
        return f"webhook {urlsplit(self.url).hostname or '?'}"

    def send(self, alert: Alert) -> None:
        import httpx  # lazily: keeps `courier` start-up fast

        try:
            response = httpx.post(
                self.url, json=alert.payload(), headers=self.headers, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise AlertDeliveryError(
                f"{self.describe()}: {type(exc).__name__}; check that the URL is reachable"
            ) from None
        if not response.is_success:
            raise AlertDeliveryError(
                f"{self.describe()} answered HTTP {response.status_code}; check the URL and "
                "its credentials"
            )


class CommandSink:
    """Run a command with the alert as JSON on stdin and in COURIER_ALERT_* variables."""

    def __init__(self, command: list[str], timeout: float = 30.0):
        self.command = command
        self.timeout = timeout

    def describe(self) -> str:
        return f"command {os.path.basename(self.command[0])}"

    def send(self, alert: Alert) -> None:
        payload = alert.payload()
        env = {
            **os.environ,
            "COURIER_ALERT_JSON": json.dumps(payload),
            "COURIER_ALERT_KIND": alert.kind,
            "COURIER_ALERT_MESSAGE": alert.message,
            "COURIER_ALERT_COURIER": alert.courier or "",
            "COURIER_ALERT_GROUP": alert.group or "",
            "COURIER_ALERT_RUN_ID": alert.run_id or "",
        }
        try:
            done = subprocess.run(
                self.command,
                input=json.dumps(payload).encode(),
                env=env,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AlertDeliveryError(f"{self.describe()}: {exc}") from None
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-300:]
            raise AlertDeliveryError(
                f"{self.describe()} exited with {done.returncode}" + (f": {tail}" if tail else "")
            )


def create_sinks(section: AlertsSection) -> list[AlertSink]:
    sinks: list[AlertSink] = []
    for config in section.sinks:
        if isinstance(config, LogSinkConfig):
            sinks.append(LogSink())
        elif isinstance(config, WebhookSinkConfig):
            sinks.append(WebhookSink(config.url, dict(config.headers), config.timeout))
        elif isinstance(config, CommandSinkConfig):
            sinks.append(CommandSink(list(config.command), config.timeout))
    return sinks


class Alerter:
    """Sends each alert to every sink; thread-safe; remembers what each sink answered."""

    def __init__(self, sinks: list[AlertSink]):
        self.sinks = sinks
        self._lock = threading.Lock()
        self.sent: list[Alert] = []

    @classmethod
    def for_settings(cls, section: AlertsSection) -> Alerter:
        return cls(create_sinks(section))

    def fire(self, alert: Alert) -> Alert:
        for sink in self.sinks:
            name = sink.describe()
            n = 2
            while name in alert.deliveries:
                name, n = f"{sink.describe()} #{n}", n + 1
            try:
                sink.send(alert)
            except AlertDeliveryError as exc:
                log.error("alert %s could not be delivered: %s", alert.alert_id, exc)
                alert.deliveries[name] = f"error: {exc}"
            except Exception as exc:  # a broken sink must never break a run
                log.exception("alert sink %s failed", name)
                alert.deliveries[name] = f"error: {exc!r}"
            else:
                alert.deliveries[name] = "ok"
        with self._lock:
            self.sent.append(alert)
        return alert
