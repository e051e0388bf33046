"""Shared argument handling for the spark-submit entry points in ``jobs/``.

Each job parses its arguments, calls one library function, and turns any failure into a
one-line message and exit code 1 (the job's log keeps the message; no traceback for bad input).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date

from skewless.runtime.settings import Settings, load_settings


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2024-03-01, got {text!r}") from None


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", help="skewless config file (default: $SKEWLESS_CONF or conf/local.yaml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def run_job(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, Settings], str],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, run ``body`` and return the process exit code."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        message = body(args, load_settings(args.conf))
    except Exception as exc:  # the same one-line rule as the CLI (skewless.cli.describe_failure)
        if args.debug:
            raise
        from skewless.cli import describe_failure

        print(f"error: {describe_failure(exc)}", file=sys.stderr)  # noqa: T201 - the job's only output channel
        return 1
    print(message)  # noqa: T201
    return 0
