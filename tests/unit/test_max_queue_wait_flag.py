"""``--max-queue-wait`` / ``MAX_QUEUE_WAIT``: seconds (fractions too), above 0, no default."""

from __future__ import annotations

import pytest

from tei_ort.cli import commands as cli
from tei_ort.cli import flags
from tei_ort.errors import ConfigurationError
from tei_ort.settings import Settings


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = cli.router_parser()
    return flags.settings_from_args(parser, parser.parse_args(argv), environ=env or {})


def test_unset_by_default_then_from_the_flag_or_the_variable() -> None:
    assert parse([]).max_queue_wait is None
    assert parse(["--max-queue-wait", "2.5"]).max_queue_wait == 2.5
    assert parse([], {"MAX_QUEUE_WAIT": "30"}).max_queue_wait == 30.0
    assert parse(["--max-queue-wait", "1"], {"MAX_QUEUE_WAIT": "30"}).max_queue_wait == 1.0


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_value_stops_the_start(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["--max-queue-wait", value])
    assert exc.value.code == 2
    assert "--max-queue-wait" in capsys.readouterr().err


def test_settings_refuse_a_wait_of_zero() -> None:
    with pytest.raises(ConfigurationError, match="max_queue_wait"):
        Settings(max_queue_wait=0.0)
