"""moto's SQS server on 127.0.0.1 and what the SQS consumer and ``kinto-fxa`` command
tests share: queues, sending and counting messages, the ``kinto-fxa`` script."""

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests._events_helpers import (
    sns,
)
from tests.helpers import free_port


BIN = Path(sys.executable).parent
KINTO_FXA = str(BIN / "kinto-fxa")
KINTO = str(BIN / "kinto")
REGION = "us-east-1"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
UID = "0123456789abcdef0123456789abcdef"
#: Upper bound on waiting for something that should happen; only reached when it does not.
DEADLINE_SECONDS = 60


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """moto's SQS, served over HTTP on 127.0.0.1 (the CLI processes talk to it)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    yield f"http://127.0.0.1:{server._port}"
    server.stop()


@pytest.fixture
def sqs_client(sqs_endpoint, monkeypatch):
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    return boto3.client("sqs", region_name=REGION, endpoint_url=sqs_endpoint)


@pytest.fixture
def queue_url(sqs_client) -> str:
    """A fresh queue; messages come back 2 s after an unfinished receive."""
    name = f"fxa-events-{uuid.uuid4().hex[:10]}"
    attributes = {"VisibilityTimeout": "2"}
    return str(sqs_client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def send(client: Any, url: str, *bodies: str) -> None:
    for body in bodies:
        client.send_message(QueueUrl=url, MessageBody=body)


def in_queue(client: Any, url: str) -> int:
    """Messages in the queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def visible(client: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages"]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


JUNK = (
    "not json",
    json.dumps({"Message": "{oops"}),
    sns({"event": "delete"}),
    sns({"event": "somethingNew", "uid": UID}),
)
