"""Notifications: the log always, SNS through a moto server (read back from an SQS subscription), and a
Slack-style webhook on a small local HTTP server; a failing channel is reported, the others still served."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from resources.notifier import NotificationError, Notifier
from tests.servers import free_port


class WebhookServer:
    """Records every POSTed JSON body; answers ``status``."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                outer.paths.append(self.path)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"invalid_token")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def topic_with_queue(aws_env, request):
    """An SNS topic with an SQS queue subscribed to it, to read published messages back."""
    sns, sqs = aws_env.client("sns"), aws_env.client("sqs")
    name = request.node.name.replace("[", "-").replace("]", "")[:60]
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def received() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return topic_arn, received


def test_log_only_when_nothing_is_configured(caplog):
    with caplog.at_level(logging.INFO, logger="tradai.notifications"):
        assert Notifier().notify("drift", "trend: drift on rsi", "PSI 0.31", severity="warning") == ["log"]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "[WARNING] drift: trend: drift on rsi\nPSI 0.31"


def test_sns_and_webhook_both_receive_the_message(topic_with_queue, aws_env, caplog):
    topic_arn, received = topic_with_queue
    details = {"model": "trend", "psi": {"rsi": 0.31, "prediction": 0.05}}
    with WebhookServer() as webhook, caplog.at_level(logging.INFO, logger="tradai.notifications"):
        notifier = Notifier(sns_topic_arn=topic_arn, webhook_url=webhook.url, region=aws_env.region,
                            endpoint_url=aws_env.url)
        assert notifier.notify("drift", "trend: drift on rsi", "PSI above 0.25", "warning", details) == [
            "log", "sns", "webhook"]
    text = '[WARNING] drift: trend: drift on rsi\nPSI above 0.25\n' + json.dumps(details, sort_keys=True, indent=2)
    assert webhook.bodies == [{"text": text}]
    assert webhook.paths == ["/services/T000/B000/secret"]
    (envelope,) = received()
    assert envelope["Subject"] == "[WARNING] drift: trend: drift on rsi"
    assert envelope["Message"] == text
    assert envelope["MessageAttributes"]["kind"]["Value"] == "drift"
    assert caplog.records[0].getMessage() == text


def test_a_long_subject_is_shortened_for_sns_only(topic_with_queue, aws_env):
    topic_arn, received = topic_with_queue
    subject = "rollback of a model whose name is long " * 5
    Notifier(sns_topic_arn=topic_arn, region=aws_env.region, endpoint_url=aws_env.url).notify(
        "rollback", subject, "champion back to version 3")
    (envelope,) = received()
    assert len(envelope["Subject"]) == 100 and envelope["Subject"].endswith("...")
    assert subject in envelope["Message"]


def test_a_failing_webhook_is_reported_and_sns_still_delivered(topic_with_queue, aws_env, caplog):
    topic_arn, received = topic_with_queue
    with WebhookServer(status=403) as webhook:
        notifier = Notifier(sns_topic_arn=topic_arn, webhook_url=webhook.url, region=aws_env.region,
                            endpoint_url=aws_env.url)
        with pytest.raises(NotificationError) as failed:
            notifier.notify("promotion", "trend: v2 promoted", "p = 0.001")
    assert failed.value.delivered == ["log", "sns"]
    assert failed.value.failures == {"webhook": f"RuntimeError: webhook http://127.0.0.1:{webhook.server.server_address[1]} answered HTTP 403: invalid_token"}
    assert "secret" not in str(failed.value)  # the webhook's path is its credential
    assert len(received()) == 1
    assert "failed on webhook" in caplog.records[-1].getMessage()


def test_unreachable_channels_are_all_reported(aws_env):
    notifier = Notifier(
        sns_topic_arn="arn:aws:sns:us-east-1:123456789012:missing", webhook_url=f"http://127.0.0.1:{free_port()}/hook",
        region=aws_env.region, endpoint_url=aws_env.url, timeout_seconds=2,
    )
    with pytest.raises(NotificationError, match=r"failed on sns: NotFoundException.*; webhook: RuntimeError: webhook http://127.0.0.1:\d+ is unreachable") as failed:
        notifier.notify("run_failure", "backtest failed", "see run 1234", severity="error")
    assert failed.value.delivered == ["log"]


def test_an_unknown_severity_is_refused():
    with pytest.raises(ValueError, match="severity must be one of"):
        Notifier().notify("drift", "s", "m", severity="critical")
