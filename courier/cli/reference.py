"""The reference pages in docs/: docs/configuration.md (courier/config/reference.py) and
docs/commands.md from the click commands. `python -m courier.cli.reference` rewrites both;
`--check` exits 1 when either is out of date (a test runs it).
"""

from __future__ import annotations

import inspect
import sys

import click

from courier.config.reference import DOCS, configuration_md


def command_rows(command: click.Command, path: str) -> list[str]:
    out = []
    help_text = inspect.cleandoc(command.help or "").strip()
    out += [f"### `{path}`", "", help_text or "(no description)", ""]
    params = [p for p in command.params if p.name != "help"]
    if params:
        out += ["| argument or option | what it does |", "| --- | --- |"]
        for p in params:
            if isinstance(p, click.Option):
                names = ", ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
                text = p.help or ""
                if isinstance(p.type, click.Choice):
                    text += f" (one of {', '.join(map(str, p.type.choices))})"
            else:
                names, text = f"`{(p.name or '').upper()}`", "argument"
            out.append(f"| {names} | {text.replace('|', '/')} |")
        out.append("")
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            out += command_rows(command.commands[name], f"{path} {name}")
    return out


def commands_md() -> str:
    from courier.cli.main import cli, load_plugins

    load_plugins()
    out = [
        "# Command reference",
        "",
        "Generated from the command line itself by `python -m courier.cli.reference`; `courier",
        "COMMAND --help` shows the same. Every command takes the global options before it:",
        "`courier [--project DIR] [--debug] [--wide] COMMAND ...`. Exit status: 0 ok, 1 failed",
        "(the error on stderr in one line; `--debug` shows the traceback), 2 wrong usage.",
        "",
        "## Shell completion",
        "",
        "courier's command line completes commands, options and choices in bash, zsh and fish:",
        "",
        "```",
        'eval "$(_COURIER_COMPLETE=bash_source courier)"   # in ~/.bashrc',
        'eval "$(_COURIER_COMPLETE=zsh_source courier)"    # in ~/.zshrc',
        "_COURIER_COMPLETE=fish_source courier | source     # fish: in completions/courier.fish",
        "```",
        "",
        "## Commands",
        "",
    ]
    out += command_rows(cli, "courier")
    return "\n".join(out).rstrip() + "\n"


PAGES = {"configuration.md": configuration_md, "commands.md": commands_md}


def main() -> None:
    check = "--check" in sys.argv[1:]
    stale = []
    for name, make in PAGES.items():
        text = make()
        if check:
            if (DOCS / name).read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        (DOCS / name).write_text(text, encoding="utf-8")
        print(f"wrote docs/{name}", file=sys.stderr)
    if stale:
        print(
            f"out of date: {', '.join('docs/' + n for n in stale)}; run "
            "`.venv/bin/python -m courier.cli.reference`",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
