"""Failure notifications: one line to the log, and optionally to a webhook or by e-mail.

Called by the DAG's failure callback (dags/retrain.py resolves the Airflow connection and hands its
fields here) and usable from any runner. Plain Python (urllib, smtplib): no Airflow import.

A target is a dict with ``conn_type`` (``http``/``https`` for a webhook that receives
``{"text": message}`` as JSON, ``smtp``/``email`` for mail), ``host``, ``port``, ``login``,
``password``, ``schema`` (the webhook path) and ``extra`` (``{"to": "a@b", "from": ...}`` for mail).

Mail goes over TLS that verifies the server's certificate and host name
(``ssl.create_default_context()``): STARTTLS on the given port (default 587), or implicit TLS with
``extra.tls = "ssl"`` (port 465). ``extra.ca_file`` names a CA bundle to trust besides the system's
(a private CA). ``extra.tls = "none"`` sends in clear text and is refused when a login is set, so a
password never crosses the network unencrypted; a server whose certificate does not verify gets
nothing.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.request
from email.message import EmailMessage
from typing import Any

log = logging.getLogger("pipelines.notify")


def _webhook(message: str, target: dict[str, Any]) -> None:
    scheme = target.get("conn_type") or "https"
    host = target.get("host") or ""
    url = host if "://" in host else f"{scheme}://{host}"
    if target.get("port"):
        url = f"{url}:{target['port']}"
    if target.get("schema"):
        url = f"{url}/{str(target['schema']).lstrip('/')}"
    req = urllib.request.Request(url, data=json.dumps({"text": message}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _mail(message: str, target: dict[str, Any]) -> None:
    extra = target.get("extra") or {}
    if not extra.get("to"):
        raise ValueError("the notifier connection's extra needs a 'to' address")
    msg = EmailMessage()
    msg["Subject"] = (message.splitlines() or [""])[0][:120]  # a header holds one line
    msg["From"] = extra.get("from", target.get("login") or "pipelines@localhost")
    msg["To"] = extra["to"]
    msg.set_content(message)
    tls = str(extra.get("tls") or "starttls").lower()
    if tls not in ("starttls", "ssl", "none"):
        raise ValueError(f"the notifier connection's extra.tls is {tls!r}: use starttls (default), "
                         f"ssl or none")
    if tls == "none" and target.get("login"):
        raise ValueError("the notifier connection has a login but extra.tls is 'none': refusing to "
                         "send a password in clear text (use starttls or ssl)")
    context = ssl.create_default_context(cafile=extra.get("ca_file"))
    host = target.get("host") or "localhost"
    smtp: smtplib.SMTP
    if tls == "ssl":
        smtp = smtplib.SMTP_SSL(host, int(target.get("port") or 465), timeout=10, context=context)
    else:
        smtp = smtplib.SMTP(host, int(target.get("port") or (587 if tls == "starttls" else 25)),
                            timeout=10)
    with smtp:
        if tls == "starttls":
            smtp.starttls(context=context)  # verifies the certificate and the host name
        if target.get("login"):
            smtp.login(target["login"], target.get("password") or "")
        smtp.send_message(msg)


def notify(message: str, target: dict[str, Any] | None = None) -> bool:
    """Sends ``message``; returns True when an external target received it.

    The log line is always written first, so a broken webhook never hides the reason of a failure.
    A failing webhook or mail server is logged as a warning and does not raise.
    """
    log.error("%s", message)
    if not target:
        return False
    kind = (target.get("conn_type") or "").lower()
    try:
        if kind in ("http", "https", "webhook"):
            _webhook(message, target)
        elif kind in ("smtp", "email"):
            _mail(message, target)
        else:
            log.warning("notifier connection type %r is not supported (use http, https or smtp)", kind)
            return False
    except Exception as exc:  # noqa: BLE001 - a notifier must never mask the failure it reports
        log.warning("could not deliver the failure notice via %s: %s", kind, exc)
        return False
    return True
