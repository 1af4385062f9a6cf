"""Delivering the outbox: webhook, email (SMTP) and shell-command actions, retried with backoff.

:func:`deliver_due` claims due deliveries from the store (a lease, so two deliverers never send
one at once, and one that died loses its lease), sends each, and records it as delivered, or
for a retry ``KEEL_ALERT_RETRY_SECONDS * 2**(attempt-1)`` seconds later (at most 5 min), or as
failed after ``KEEL_ALERT_MAX_ATTEMPTS`` tries. A deliverer that dies while sending loses its lease
after ``KEEL_ALERT_LEASE_SECONDS`` (30). Every notification carries its delivery id
(header ``X-Keel-Delivery``, email ``Message-ID``, ``KEEL_ALERT_DELIVERY_ID``) so a receiver
can drop the rare duplicate of a deliverer killed between sending and recording.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
from typing import Any

from keel.errors import AlertError
from keel.settings import Settings
from keel.store.records import Delivery, Firing


def deliver_due(md: Any, *, now: float | None = None, limit: int = 50) -> int:
    """Send every due delivery once; returns how many were delivered."""
    sent = 0
    lease = Settings.from_env().alert_lease_seconds
    for delivery in md.alerts.claim(now=now, limit=limit, lease=lease):
        tried_at = time.time() if now is None else now
        firing = md.alerts.get_firing(delivery.firing_id)
        if firing is None:
            md.alerts.retry_later(delivery.id, "its firing is gone", None)
            continue
        try:
            send(firing, delivery.target, delivery_id=str(delivery.id))
        except Exception as exc:  # noqa: BLE001 - any failure of an action is a retry, recorded
            md.alerts.retry_later(delivery.id, f"{type(exc).__name__}: {exc}", _next_try(delivery, tried_at))
            continue
        md.alerts.delivered(delivery.id)
        sent += 1
    return sent


def _next_try(delivery: Delivery, tried_at: float) -> float | None:
    settings = Settings.from_env()
    if delivery.attempts >= settings.alert_max_attempts:
        return None
    base = settings.alert_retry_seconds
    return tried_at + min(300.0, base * 2 ** (delivery.attempts - 1))


def payload(firing: Firing, delivery_id: str) -> dict[str, Any]:
    """The JSON body of a notification (``text`` makes it a Slack incoming-webhook message)."""
    return {"text": f"[keel] {firing.rule}: {firing.summary}", "rule": firing.rule, "flow": firing.flow,
            "run_id": firing.run_id or None, "key": firing.key, "fired_at": firing.fired_at,
            "summary": firing.summary, "delivery_id": delivery_id, "firing_id": firing.id,
            "fields": dict(firing.fields)}


def send(firing: Firing, target: dict[str, Any], *, delivery_id: str) -> None:
    """Send one notification now; raises on failure."""
    body = payload(firing, delivery_id)
    if "webhook" in target:
        _webhook(target, body, delivery_id)
    elif "email" in target:
        _email(target["email"], body, delivery_id)
    elif "command" in target:
        _command(target["command"], body, delivery_id)
    else:
        raise AlertError(f"unknown action {target!r}: expected webhook, email or command")


def signature(secret: str, body: bytes) -> str:
    """The ``X-Keel-Signature`` header: ``sha256=`` HMAC-SHA256 of the body, hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _webhook(target: dict[str, Any], body: dict[str, Any], delivery_id: str) -> None:
    import urllib.request

    data = json.dumps(body, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "keel-alerts", "X-Keel-Delivery": delivery_id,
               "Idempotency-Key": delivery_id}
    secret = target.get("secret") or (os.environ.get(target["secret_env"]) if target.get("secret_env") else None)
    if target.get("secret_env") and not secret:
        raise AlertError(f"the webhook's secret_env {target['secret_env']} is not set in the environment")
    if secret:
        headers["X-Keel-Signature"] = signature(secret, data)
    request = urllib.request.Request(target["webhook"], data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the user's URL
        response.read()


def _email(to: str | list[str], body: dict[str, Any], delivery_id: str) -> None:
    import smtplib
    from email.message import EmailMessage
    from urllib.parse import unquote, urlsplit

    settings = Settings.from_env()
    url = settings.smtp_url
    if not url:
        raise AlertError("an email alert needs KEEL_SMTP_URL (smtp://user:pass@host:port, or smtps://...)")
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise AlertError(f"KEEL_SMTP_URL must look like smtp://user:pass@host:port, got scheme {parts.scheme!r}")
    msg = EmailMessage()
    msg["Subject"] = body["text"][:200]
    msg["From"] = settings.smtp_from or f"keel@{parts.hostname}"
    msg["To"] = ", ".join(to) if isinstance(to, list) else to
    msg["Message-ID"] = f"<keel-alert-{delivery_id}@keel>"
    msg["X-Keel-Delivery"] = delivery_id
    msg.set_content(f"{body['summary']}\n\n{json.dumps(body, indent=2, default=str)}\n")
    cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with cls(parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25), timeout=10) as smtp:
        if parts.username:
            if parts.scheme == "smtp" and smtp.has_extn("starttls"):
                smtp.starttls()
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(msg)


def _command(line: str, body: dict[str, Any], delivery_id: str) -> None:
    env = {**os.environ, "KEEL_ALERT_RULE": body["rule"], "KEEL_ALERT_FLOW": body["flow"],
           "KEEL_ALERT_RUN_ID": str(body["run_id"] or ""), "KEEL_ALERT_SUMMARY": body["summary"],
           "KEEL_ALERT_TEXT": body["text"], "KEEL_ALERT_DELIVERY_ID": delivery_id,
           "KEEL_ALERT_JSON": json.dumps(body, default=str)}
    done = subprocess.run(line, shell=True, env=env, capture_output=True, timeout=60)  # noqa: S602 - user's line
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise AlertError(f"the alert command exited with {done.returncode}: {tail[0][:300]}")
