"""The SQS consumer, in-process, against moto's SQS server: deletions, junk, failures,
redelivery, signals."""

import logging
import signal
import threading
import time

import pytest
from kinto.core.metrics import IMetricsService

from kinto_fxa import events, sqs
from tests._events_helpers import (
    FakeSQS,
    RecordingMetrics,
    Snapshot,
    auth,
    events_settings,
    seed,
    sns,
    sqs_message,
)
from tests.helpers import wait_until
from tests.sqs_fixtures import (
    JUNK,
    UID,
    in_queue,
    send,
    visible,
)


@pytest.fixture
def app(make_app, fxa_server):
    app = make_app(events_settings(fxa_server.oauth_uri, {}))
    app.metrics = RecordingMetrics()
    app.app.registry.registerUtility(app.metrics, IMetricsService)
    return app


def consumer_for(app, client, url, **kw) -> sqs.Consumer:
    kw.setdefault("sleep", lambda seconds: None)
    return sqs.Consumer(app.app.registry, client, url, wait_time=0, **kw)


def drain(consumer: sqs.Consumer) -> None:
    """Poll until a receive comes back empty."""
    while consumer.poll():
        pass


class TestConsumer:
    def test_deletes_the_user_and_drops_the_junk(self, app, fxa_server, sqs_client, queue_url):
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        send(sqs_client, queue_url, *JUNK, sns({"event": "delete", "uid": seeded.alice}))

        drain(consumer_for(app, sqs_client, queue_url))

        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)
        assert in_queue(sqs_client, queue_url) == 0
        assert sorted(app.metrics.outcomes()) == [
            ("delete", "deleted"),
            *[("invalid", "invalid")] * len(JUNK),
        ]
        assert (events.METRIC_DURATION, {"source": "sqs", "event": "delete"}) in (
            app.metrics.timers
        )

    def test_a_delete_naming_another_clients_user_id_is_dropped(self, app, fxa_server):
        """Issue 8.3: a ``delete`` for ``<uid>-notes`` deleted the notes data of ``<uid>``."""
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        client = FakeSQS()
        consumer = sqs.Consumer(app.app.registry, client, "https://sqs.test/q", wait_time=0)
        for i, uid in enumerate((f"{seeded.alice}-notes", seeded.alice + "\n")):
            body = sns({"event": "delete", "uid": uid})
            assert consumer.process(sqs_message(body, str(i))) == "invalid"

        assert client.deleted == ["0", "1"]  # Dropped from the queue: it never becomes valid.
        assert Snapshot.of(app.app.registry) == before
        notes = "/v1/buckets/default/collections/notes/records/n1"
        app.get(notes, headers=seeded.alice_notes_headers, status=200)

    def test_password_change_and_ignored_events(self, app, fxa_server, sqs_client, queue_url):
        uid = fxa_server.uid_for("alice@example.com")
        old = auth(fxa_server.mint_jwt(uid, generation=1_000))
        app.get("/v1/buckets", headers=old, status=200)
        send(
            sqs_client,
            queue_url,
            sns({"event": "passwordChange", "uid": uid, "generation": 2_000}),
            sns({"event": "login", "uid": uid}),
        )

        drain(consumer_for(app, sqs_client, queue_url))

        app.get("/v1/buckets", headers=old, status=401)
        assert sorted(app.metrics.outcomes()) == [
            ("login", "ignored"),
            ("passwordChange", "revoked"),
        ]
        assert in_queue(sqs_client, queue_url) == 0

    def test_a_failure_leaves_the_message_for_redelivery(
        self, app, fxa_server, sqs_client, queue_url, monkeypatch, caplog
    ):
        caplog.set_level(logging.INFO, logger="kinto_fxa")
        seeded = seed(app, fxa_server)
        before = Snapshot.of(app.app.registry)
        send(sqs_client, queue_url, sns({"event": "delete", "uid": seeded.alice}))

        def broken(registry, uid):
            raise RuntimeError("Database gone")

        with monkeypatch.context() as patch:
            patch.setattr(events.accounts, "delete_user_data", broken)
            consumer = consumer_for(app, sqs_client, queue_url)
            assert consumer.poll() == 1

        assert "left in the queue for redelivery" in caplog.text
        assert ("delete", "error") in app.metrics.outcomes()
        assert in_queue(sqs_client, queue_url) == 1
        assert Snapshot.of(app.app.registry) == before

        # Once it comes back (the visibility timeout), it is handled.
        wait_until(lambda: consumer.poll(), "the message is delivered again")
        assert in_queue(sqs_client, queue_url) == 0
        assert Snapshot.of(app.app.registry) == before.without_alice(seeded)
        assert "attempt 2" in caplog.text

    def test_stopping_releases_the_messages_not_handled(self, app, sqs_client, queue_url):
        send(sqs_client, queue_url, *(sns({"event": "login", "uid": UID}) for _ in range(3)))
        consumer = consumer_for(app, sqs_client, queue_url)
        handled = []

        def process_then_stop(message):
            handled.append(message)
            consumer.stop()
            return "ignored"

        consumer.process = process_then_stop  # type: ignore[method-assign]
        received = wait_until(consumer.poll, "messages are received")

        assert len(handled) == 1
        assert visible(sqs_client, queue_url) == received - 1  # Right away, not in 2 s.
        assert consumer.poll() == 0  # Stopped: no more receiving.

    def test_sqs_failures_are_survived(self, app, sqs_client, queue_url, caplog):
        slept = []
        consumer = consumer_for(
            app, sqs_client, queue_url + "-gone", sleep=slept.append, error_backoff=3
        )
        assert consumer.poll() == 0
        assert slept == [3]
        assert "Could not receive" in caplog.text
        assert ("receive", "error") in app.metrics.outcomes()

        # Deleting and releasing a message failing are logged, not fatal.
        message = {"MessageId": "m", "ReceiptHandle": "nope", "Body": sns({"event": "login"})}
        assert consumer.process(message) == "ignored"
        consumer._release([message])
        assert "Could not delete message m" in caplog.text
        assert "Could not release message m" in caplog.text

    def test_the_testing_pause_happens_before_the_commit(self, app, sqs_client, queue_url):
        pauses = []

        class Manager:
            def __enter__(self):
                pauses.append("begin")

            def __exit__(self, *exc):
                pauses.append("commit")

        consumer = consumer_for(
            app,
            sqs_client,
            queue_url,
            pause_before_commit=1.5,
            sleep=pauses.append,
            transaction_manager=Manager(),
        )
        send(sqs_client, queue_url, sns({"event": "login"}))
        wait_until(consumer.poll, "the message is received")
        assert pauses == ["begin", 1.5, "commit"]

    def test_resolve_queue_url(self, sqs_client, queue_url):
        name = queue_url.rsplit("/", 1)[1]
        assert sqs.resolve_queue_url(sqs_client, name) == queue_url
        assert sqs.resolve_queue_url(sqs_client, queue_url) == queue_url


class TestSignals:
    @pytest.fixture
    def consumer(self, app, sqs_client, queue_url):
        consumer = consumer_for(app, sqs_client, queue_url)
        consumer.wait_time = 20
        return consumer

    def test_a_signal_while_waiting_stops_at_once(self, consumer):
        """The long poll is cut short: no 20 s wait, and what it would bring stays queued."""
        real_receive = consumer.sqs.receive_message
        returned = []

        class Client:
            def receive_message(self, **kwargs):
                response = real_receive(**kwargs)
                returned.append(response)
                return response

        consumer.sqs = Client()
        main_thread = threading.get_ident()

        def interrupt():
            wait_until(lambda: consumer._waiting, "the consumer waits")
            time.sleep(0.2)  # Inside receive_message's long poll.
            # As in the single-threaded command: the main thread gets the signal.
            signal.pthread_kill(main_thread, signal.SIGTERM)

        restore = consumer.install_signal_handlers()
        try:
            killer = threading.Thread(target=interrupt)
            killer.start()
            consumer.run()
            killer.join()
        finally:
            restore()
        assert consumer.stopping
        assert returned == []  # The receive was interrupted, not completed.
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def test_a_signal_while_handling_stops_after_the_message(self, consumer):
        consumer._on_signal(signal.SIGINT, None)  # Not waiting: no exception.
        assert consumer.stopping
        with pytest.raises(KeyboardInterrupt):  # A second one: stop now.
            consumer._on_signal(signal.SIGINT, None)
        consumer.run()  # Stopped already: returns.


# The command, in-process.
