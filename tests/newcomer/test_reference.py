"""The reference in docs/ (issue 18, item 6): generated from the models and the click
commands, so a key or command that is not documented fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from courier.config.reference import DOCS, file_kinds

REPO = Path(__file__).resolve().parents[2]


def all_keys(model: type, prefix: str = "") -> list[str]:
    import typing

    from pydantic import BaseModel

    out = []
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        key = f"{prefix}{info.alias or name}"
        out.append(key)
        stack = [info.annotation]
        is_map = typing.get_origin(info.annotation) is dict
        while stack:
            t = stack.pop()
            stack.extend(typing.get_args(t))
            if isinstance(t, type) and issubclass(t, BaseModel) and t is not model:
                out.extend(all_keys(t, f"{key}.{'NAME.' if is_map else ''}"))
    return out


def test_the_reference_pages_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "courier.cli.reference", "--check"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_every_config_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    for path, _, model in file_kinds():
        assert f"## {path}" in text
        for key in all_keys(model):
            assert f"| `{key}` |" in text, f"{path}: key {key} is not in docs/configuration.md"


def test_every_command_is_documented() -> None:
    text = (DOCS / "commands.md").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "courier", "--help"], capture_output=True, text=True, timeout=60
    )
    commands = [
        line.split()[0]
        for line in proc.stdout.split("Commands:")[1].splitlines()
        if line.startswith("  ")
    ]
    assert "validate" in commands and "quarantine" in commands
    for command in commands:
        assert f"### `courier {command}`" in text, f"courier {command} is not in docs/commands.md"
    assert "_COURIER_COMPLETE=bash_source courier" in text  # shell completion


def test_completion_works_as_documented() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from courier.cli.main import main; main()"],
        env={"_COURIER_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0 and "_courier_completion" in proc.stdout


def test_every_config_key_says_what_it_does_in_four_cells() -> None:
    """Each key has a description (the model's, or courier/config/descriptions.py, whose
    entries must name real fields), and each row stays four cells: a `str | None` type
    written with a bare pipe split its row and pushed the description out."""
    import re

    from courier.config.reference import undocumented

    missing, orphans = undocumented()
    assert missing == [], f"keys without a description: {missing}"
    assert orphans == [], f"descriptions of no field (renamed?): {orphans}"
    text = (DOCS / "configuration.md").read_text().split("## A courier's `options`")
    rows = [r for r in text[0].splitlines() if r.startswith("| `")]
    assert len(rows) > 100
    for row in rows:
        cells = re.split(r"(?<!\\)\|", row)[1:-1]
        assert len(cells) == 4, row
        assert cells[3].strip(), f"no description: {row}"
    for row in [r for r in text[1].splitlines() if r.startswith("| `")]:  # option | what
        assert len(re.split(r"(?<!\\)\|", row)[1:-1]) == 2, row
