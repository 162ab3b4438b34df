"""The daemon's log lines: a timestamp and a level on each, as text or as JSON."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from gateway.adapters import logformat


def test_json_lines_carry_time_level_logger_message_and_the_error() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("reefknot.test").makeRecord("reefknot.test", logging.ERROR, __file__, 1,
                                                               "intake %d: %s", (7, "held"), sys.exc_info())
    line = json.loads(logformat.JsonLines().format(record))
    assert (line["level"], line["logger"], line["message"]) == ("error", "reefknot.test", "intake 7: held")
    assert line["time"].endswith("+00:00") and "ValueError: boom" in line["error"]


@pytest.mark.parametrize("form", ["text", "json"])
def test_configure_writes_at_and_above_the_level(form: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logformat.configure("warning", form)
        logging.getLogger("reefknot.test").info("not written")
        logging.getLogger("reefknot.test").warning("written")
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert len(lines) == 1 and "written" in lines[0] and ("WARNING" in lines[0] or '"warning"' in lines[0])
