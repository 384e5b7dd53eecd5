"""Every command's --help reads whole on an 80-column terminal: no cut words, no type labels on flags."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from fractalad_edge.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_without_cut_words(command: str) -> None:
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "…" not in result.output, result.output  # an option name or help text cut short
    assert "<bool>" not in result.output, result.output  # a type label on a flag
    assert max(map(len, lines)) <= 80, result.output
    # a word broken at its hyphen across two lines, e.g. "--batch-" / "size"
    assert not [line for line in lines if re.search(r"[A-Za-z]-$", line)], result.output


def test_every_command_is_checked() -> None:
    assert {"train", "eval", "export", "calibrate", "predict", "bench", "demo"} <= set(COMMANDS)
