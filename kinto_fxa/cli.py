"""The ``kinto-fxa`` command.

::

    kinto-fxa [--ini FILE] process-account-events QUEUE [--aws-region R]
              [--queue-wait-time S] [--endpoint-url URL]
    kinto-fxa local-fxa [--host H] [--port P]
    kinto-fxa [--ini FILE] dev-server
    kinto-fxa check-config [INI] [--online]

``--ini`` defaults to ``$KINTO_INI``, else ``config/kinto.ini``.

Testing hook: when ``KINTO_FXA_TEST_PAUSE_BEFORE_COMMIT`` is set (seconds),
``process-account-events`` sleeps that long after handling each event, before committing, so
that a test can kill it at that moment. Never set it in production.
"""

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any


logger = logging.getLogger("kinto_fxa.cli")

PAUSE_ENV = "KINTO_FXA_TEST_PAUSE_BEFORE_COMMIT"


def default_ini() -> str:
    return os.environ.get("KINTO_INI") or "config/kinto.ini"


class CommandError(Exception):
    """A problem to report in one line, with exit status 1."""


def _wait_time(value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 0 <= seconds <= 20:
        raise argparse.ArgumentTypeError("must be between 0 and 20 (SQS long polling)")
    return seconds


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return port


def _add_ini_option(subparser: argparse.ArgumentParser) -> None:
    """``--ini`` is accepted after the command too."""
    subparser.add_argument(
        "--ini",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="Kinto configuration file (same as the global --ini).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinto-fxa",
        description="Firefox Accounts tools for Kinto.",
    )
    parser.add_argument(
        "--ini",
        default=default_ini(),
        metavar="FILE",
        help="Kinto configuration file (default: $KINTO_INI, else config/kinto.ini; "
        "currently %(default)s). Logging is configured from it.",
    )
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )

    process = commands.add_parser(
        "process-account-events",
        help="Apply FxA account events (account deletion, password change) from SQS.",
        description=(
            "Consume FxA's account events (SNS notifications) from an SQS queue until "
            "SIGINT/SIGTERM. 'delete' deletes the account's data (default buckets, "
            "permissions); 'passwordChange'/'reset' refuse the tokens issued before the "
            "change. A message is deleted once handled; invalid ones are logged and deleted; "
            "a failure leaves the message for redelivery. AWS credentials come from the "
            "usual boto3 sources (environment, ~/.aws, instance role)."
        ),
    )
    process.add_argument("queue", metavar="QUEUE", help="SQS queue name or URL.")
    process.add_argument(
        "--aws-region",
        metavar="R",
        help="AWS region (default: boto3's resolution: AWS_DEFAULT_REGION, ~/.aws/config...).",
    )
    process.add_argument(
        "--queue-wait-time",
        type=_wait_time,
        default=20,
        metavar="S",
        help="SQS long-polling wait, in seconds, 0 to 20 (default: %(default)s).",
    )
    process.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="SQS endpoint URL (default: AWS's; e.g. a local SQS for testing).",
    )
    _add_ini_option(process)
    process.set_defaults(func=process_account_events)

    local_fxa = commands.add_parser(
        "local-fxa",
        help="Run a local FxA OAuth server for development (never in production).",
        description="Run a local Firefox Accounts OAuth server, for development and tests.",
    )
    local_fxa.add_argument(
        "--host", default="127.0.0.1", help="Interface to listen on (default: %(default)s)."
    )
    local_fxa.add_argument(
        "--port",
        type=_port,
        default=0,
        help="Port to listen on (default: 0, a free port, printed at startup).",
    )
    local_fxa.set_defaults(func=run_local_fxa)

    dev = commands.add_parser(
        "dev-server",
        help="Run a local FxA server and a Kinto using it, for development.",
        description="Run a local FxA server and a Kinto configured to use it.",
    )
    _add_ini_option(dev)
    dev.set_defaults(func=run_dev_server)

    check_config = commands.add_parser(
        "check-config",
        help="Explain and check the FxA settings of a Kinto ini file, starting nothing.",
        description=(
            "Parse the settings as the server does and print the clients, how tokens are "
            "routed to user ids, the cache levels and the revocation bound, and warnings for "
            "what exposes users. Exit status: 0 fine, 1 warnings, 2 errors."
        ),
    )
    check_config.add_argument(
        "config", nargs="?", metavar="INI", help="Kinto ini file (default: the global --ini)."
    )
    check_config.add_argument(
        "--online", action="store_true", help="Also reach FxA: heartbeat and JWKS, timed."
    )
    _add_ini_option(check_config)
    check_config.set_defaults(func=run_check_config)
    return parser


def _bootstrap(ini: str) -> dict[str, Any]:
    """Configure logging from ``ini`` and load the Kinto application it describes."""
    if not os.path.exists(ini):
        raise CommandError(f"Configuration file not found: {ini} (use --ini or $KINTO_INI)")
    from pyramid.paster import bootstrap, setup_logging

    setup_logging(ini)
    env: dict[str, Any] = bootstrap(ini)
    if not hasattr(env["registry"], "fxa_settings"):
        env["closer"]()
        raise CommandError(f"kinto_fxa is not in the kinto.includes setting of {ini}")
    return env


def _sqs_client(region: str | None, endpoint_url: str | None) -> Any:
    import boto3
    from botocore.exceptions import NoRegionError

    session = boto3.session.Session(region_name=region)
    try:
        return session.client("sqs", endpoint_url=endpoint_url)
    except NoRegionError:
        raise CommandError(
            "No AWS region: pass --aws-region, or set AWS_DEFAULT_REGION "
            "(or a region in ~/.aws/config)."
        ) from None


def process_account_events(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from kinto_fxa.sqs import Consumer, resolve_queue_url

    sqs = _sqs_client(args.aws_region, args.endpoint_url)
    env = _bootstrap(args.ini)
    try:
        try:
            queue_url = resolve_queue_url(sqs, args.queue)
        except (BotoCoreError, ClientError) as e:
            raise CommandError(f"Cannot use the SQS queue {args.queue!r}: {e}") from None
        pause = float(os.environ.get(PAUSE_ENV) or 0)
        if pause:
            logger.warning("%s is set: pausing %s s before each commit", PAUSE_ENV, pause)
        consumer = Consumer(
            env["registry"],
            sqs,
            queue_url,
            wait_time=args.queue_wait_time,
            pause_before_commit=pause,
        )
        restore_signal_handlers = consumer.install_signal_handlers()
        try:
            consumer.run()
        finally:
            restore_signal_handlers()
    finally:
        env["closer"]()
    return 0


def run_local_fxa(args: argparse.Namespace) -> int:
    from kinto_fxa.testing.fxa_server import serve

    serve(args.host, args.port)
    return 0


def run_dev_server(args: argparse.Namespace) -> int:
    from kinto_fxa.testing import devserver

    devserver.main(args.ini)
    return 0


def run_check_config(args: argparse.Namespace) -> int:
    from kinto_fxa import checkconfig

    report = checkconfig.check(args.config or args.ini, online=args.online)
    print(report.render(), end="")
    return report.status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kinto-fxa`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CommandError as e:
        print(f"kinto-fxa: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
