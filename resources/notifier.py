"""Notifications of drift, promotions, rollbacks and failed runs: always the log; SNS and a Slack-style
webhook when configured.

Every configured channel is tried, then a channel that failed raises ``NotificationError`` naming each
failed channel and why, so an unreachable webhook fails the run (or sensor tick) that sent the
notification and never passes unnoticed, while the other channels still get the message. The log
line is written first, whatever happens to the others.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from resources import aws_contract

Severity = Literal["info", "warning", "error"]
LOG = logging.getLogger("tradai.notifications")
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
SNS_SUBJECT_LIMIT = 100  # SNS refuses longer subjects (and line breaks in them)


class NotificationError(RuntimeError):
    def __init__(self, subject: str, failures: dict[str, str], delivered: list[str]):
        self.failures = failures
        self.delivered = delivered
        listed = "; ".join(f"{channel}: {reason}" for channel, reason in failures.items())
        super().__init__(f"notification {subject!r} failed on {listed} (delivered to: {', '.join(delivered)})")


def render_text(kind: str, severity: Severity, subject: str, message: str, details: dict[str, Any]) -> str:
    text = f"[{severity.upper()}] {kind}: {subject}\n{message}"
    if details:
        text += "\n" + json.dumps(details, sort_keys=True, indent=2, default=str)
    return text


class Notifier(ConfigurableResource):
    """Sends a notification to the log and to every configured channel."""

    sns_topic_arn: str | None = Field(default=None, description="SNS topic to publish to; none when None.")
    webhook_url: str | None = Field(
        default=None, description="Slack-style incoming webhook (POST of {'text': ...}); none when None."
    )
    region: str | None = Field(default=None, description="AWS region of the topic; AWS_REGION when None.")
    endpoint_url: str | None = Field(default=None, description="AWS endpoint (a local stand-in), else boto3's.")
    timeout_seconds: float = Field(default=10.0, description="Per-request timeout of the webhook and SNS.")

    _sns: Any = PrivateAttr(default=None)

    def _sns_client(self):
        if self._sns is None:
            import boto3
            from botocore.config import Config

            region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if not region:
                raise ValueError("set the Notifier's region field or AWS_REGION to publish to SNS")
            self._sns = boto3.client(
                "sns", region_name=region, endpoint_url=self.endpoint_url,
                config=Config(connect_timeout=self.timeout_seconds, read_timeout=self.timeout_seconds,
                              retries=aws_contract.adaptive_retries(4)),
            )
        return self._sns

    def notify(
        self, kind: str, subject: str, message: str, severity: Severity = "info",
        details: dict[str, Any] | None = None,
    ) -> list[str]:
        """Send to the log and every configured channel; returns the channels reached.

        ``kind`` says what happened (drift, promotion, rollback, run_failure, ...); ``details`` is any
        JSON-able record (PSI per feature, a promotion decision) shown below the message."""
        if severity not in _LEVELS:
            raise ValueError(f"severity must be one of {list(_LEVELS)}, got {severity!r}")
        details = details or {}
        text = render_text(kind, severity, subject, message, details)
        LOG.log(_LEVELS[severity], text)
        delivered, failures = ["log"], {}
        if self.sns_topic_arn:
            try:
                self._publish_sns(kind, severity, subject, text)
                delivered.append("sns")
            except Exception as exc:  # reported below with the other channels' outcome
                failures["sns"] = f"{type(exc).__name__}: {exc}"
        if self.webhook_url:
            try:
                self._post_webhook(text)
                delivered.append("webhook")
            except Exception as exc:  # reported below with the other channels' outcome
                failures["webhook"] = f"{type(exc).__name__}: {exc}"
        if failures:
            error = NotificationError(subject, failures, delivered)
            LOG.error(str(error))
            raise error
        return delivered

    def _publish_sns(self, kind: str, severity: Severity, subject: str, text: str) -> None:
        flat = " ".join(f"[{severity.upper()}] {kind}: {subject}".split())
        short = flat if len(flat) <= SNS_SUBJECT_LIMIT else flat[: SNS_SUBJECT_LIMIT - 3] + "..."
        self._sns_client().publish(
            TopicArn=self.sns_topic_arn, Subject=short, Message=text,
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": kind},
                "severity": {"DataType": "String", "StringValue": severity},
            },
        )

    def _post_webhook(self, text: str) -> None:
        request = urllib.request.Request(
            self.webhook_url, data=json.dumps({"text": text}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:200]
            raise RuntimeError(f"{self._webhook_host()} answered HTTP {exc.code}: {body}") from exc
        except urllib.error.URLError as exc:
            raise RuntimeError(f"{self._webhook_host()} is unreachable: {exc.reason}") from exc

    def _webhook_host(self) -> str:
        # The path of a Slack webhook is its secret: name only the host in errors.
        parsed = urllib.parse.urlsplit(self.webhook_url)
        return f"webhook {parsed.scheme}://{parsed.netloc}"
