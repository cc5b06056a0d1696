"""Consume FxA's account events from an SQS queue (SNS "service notifications").

Delivery is at least once and :func:`kinto_fxa.events.handle_event` is idempotent, so:

- a message is deleted from the queue only once its handling committed;
- a message that cannot be understood (not JSON, missing fields, unknown type) is logged and
  deleted: retrying it would never help and it must not block the queue;
- a message whose handling fails (database down...) is left in the queue: SQS delivers it
  again once its visibility timeout expires, and the queue's redrive policy moves it to a
  dead-letter queue after too many attempts.

SIGINT/SIGTERM (see :meth:`Consumer.install_signal_handlers`) stop the consumer after the
message being handled; while waiting for messages it stops at once. Messages received but
not handled yet are made visible again for other consumers.
"""

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import transaction

from kinto_fxa import events


logger = logging.getLogger(__name__)

SOURCE = "sqs"
#: SQS long polling: at most 20 seconds.
MAX_WAIT_TIME_SECONDS = 20
#: SQS hands out at most 10 messages per receive.
MAX_BATCH_SIZE = 10
#: Seconds to wait before receiving again after SQS itself failed.
ERROR_BACKOFF_SECONDS = 5.0


class Interrupted(BaseException):
    """A stop signal arrived while waiting for messages.

    A ``BaseException``, like ``KeyboardInterrupt``: botocore catches ``Exception`` raised
    during a request, and retries it.
    """


def resolve_queue_url(sqs: Any, queue: str) -> str:
    """``queue`` if it is a URL, else the URL of the queue named ``queue``."""
    if queue.startswith(("https://", "http://")):
        return queue
    return str(sqs.get_queue_url(QueueName=queue)["QueueUrl"])


class Consumer:
    """Receive messages from ``queue_url`` and apply the account events they carry.

    :param registry: the Kinto application's registry (backends and ``fxa_settings``).
    :param sqs: a boto3 SQS client.
    :param wait_time: SQS long-polling wait, in seconds (0 to 20).
    :param pause_before_commit: testing hook: seconds to sleep once an event is handled,
        before the transaction commits (to kill the process at that very moment).
    """

    def __init__(
        self,
        registry: Any,
        sqs: Any,
        queue_url: str,
        *,
        wait_time: int = MAX_WAIT_TIME_SECONDS,
        batch_size: int = MAX_BATCH_SIZE,
        pause_before_commit: float = 0.0,
        error_backoff: float = ERROR_BACKOFF_SECONDS,
        transaction_manager: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.sqs = sqs
        self.queue_url = queue_url
        self.wait_time = wait_time
        self.batch_size = batch_size
        self.pause_before_commit = pause_before_commit
        self.error_backoff = error_backoff
        self.tm = transaction_manager or transaction.manager
        self.sleep = sleep
        self.stopping = False
        self._waiting = False

    # Stopping.

    def stop(self) -> None:
        """Stop after the message being handled (or at once if waiting for messages)."""
        self.stopping = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stopping and not self._waiting:
            logger.warning("%s received again: stopping now; the message will come back", name)
            raise KeyboardInterrupt
        logger.info("%s received: stopping after the current message", name)
        self.stop()
        if self._waiting:
            raise Interrupted

    def install_signal_handlers(self) -> Callable[[], None]:
        """Make SIGINT and SIGTERM stop the consumer cleanly (main thread only).

        :returns: a function restoring the previous handlers.
        """
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, self._on_signal)

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    # Consuming.

    def run(self) -> None:
        """Consume until stopped."""
        logger.info("Consuming FxA account events from %s", self.queue_url)
        try:
            while not self.stopping:
                self.poll()
        except Interrupted:
            pass
        logger.info("Stopped consuming FxA account events")

    def poll(self) -> int:
        """Receive one batch of messages and handle them; returns how many were received."""
        messages = self._receive()
        for index, message in enumerate(messages):
            if self.stopping:
                self._release(messages[index:])
                break
            self.process(message)
        return len(messages)

    def _receive(self) -> list[dict[str, Any]]:
        self._waiting = True
        try:
            if self.stopping:
                return []
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=self.wait_time,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as e:
            logger.error("Could not receive from %s: %s", self.queue_url, e)
            events.count(self.registry, SOURCE, "receive", "error")
            self.sleep(self.error_backoff)
            return []
        finally:
            self._waiting = False
        return list(response.get("Messages", []))

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Make messages received but not handled visible again, for another consumer."""
        for message in messages:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            except Exception as e:
                logger.warning("Could not release message %s: %s", message.get("MessageId"), e)

    def _delete(self, message: dict[str, Any]) -> None:
        try:
            handle = message["ReceiptHandle"]
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
        except Exception as e:
            # Handled and committed: handling it again when it comes back is harmless.
            logger.error("Could not delete message %s: %s", message.get("MessageId"), e)

    def process(self, message: dict[str, Any]) -> str:
        """Handle one SQS message: ``deleted``, ``revoked``, ``ignored``, ``invalid`` or
        ``error`` (left in the queue)."""
        message_id = message.get("MessageId")
        try:
            event = events.parse_sqs_message(message.get("Body"))
        except events.InvalidEvent as e:
            logger.warning("Dropping invalid message %s: %s", message_id, e)
            events.count(self.registry, SOURCE, "invalid", "invalid")
            self._delete(message)
            return "invalid"

        attempt = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        logger.info(
            "Handling %s event for %s (message %s, attempt %s)",
            event.name,
            event.uid,
            message_id,
            attempt,
        )
        try:
            outcome = events.process(
                self.registry, SOURCE, event, self.tm, self._pause_before_commit
            )
        except Exception:
            logger.exception(
                "Failed to handle %s event (message %s): left in the queue for redelivery",
                event.name,
                message_id,
            )
            return "error"
        self._delete(message)  # Only once the handling committed.
        return outcome.status

    def _pause_before_commit(self) -> None:
        if self.pause_before_commit > 0:
            logger.warning("Testing hook: pausing %s s before commit", self.pause_before_commit)
            self.sleep(self.pause_before_commit)
