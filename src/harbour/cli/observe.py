"""The options the long-running commands share: how they log, and where they serve their metrics.

``harbour custody serve`` and ``harbour node run`` take ``--log-format``
(``auto``: text on a terminal, JSON lines otherwise), ``--log-level`` and
``--metrics-listen HOST:PORT`` (off by default; beyond loopback only with
``HARBOUR_METRICS_TOKEN`` set, :mod:`harbour.util.scrape`). Each option also reads
its environment variable, so a unit file or a container sets them once.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated

import typer

from harbour.util import logs, scrape


class LogFormat(StrEnum):
    auto = "auto"
    json = "json"
    text = "text"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="HARBOUR_LOG_FORMAT",
        help="Log lines on stderr: JSON objects, text, or auto (text on a terminal, JSON otherwise).",
    ),
]
LogLevelOption = Annotated[
    LogLevel, typer.Option("--log-level", envvar="HARBOUR_LOG_LEVEL", help="The least severe level logged.")
]
MetricsListenOption = Annotated[
    str | None,
    typer.Option(
        "--metrics-listen",
        envvar=scrape.LISTEN_ENV,
        metavar="HOST:PORT",
        help=(
            "Serve Prometheus metrics at http://HOST:PORT/metrics (off by default). Beyond loopback, set "
            f"{scrape.TOKEN_ENV} to the bearer token scrapes must bring."
        ),
    ),
]


def metrics_endpoint(listen: str | None) -> scrape.Endpoint | None:
    """The checked endpoint (ValueError with what to fix), or None when metrics are off."""
    return None if listen is None else scrape.endpoint(listen, os.environ)


def configure_logs(log_format: LogFormat, log_level: LogLevel) -> None:
    logs.configure(log_format.value, log_level.value)


def unconfigure_logs() -> None:
    """Put logging back as it was (the command ran in-process: a test, another program)."""
    logs.unconfigure()
