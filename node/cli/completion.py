"""``keyswitch completion bash|zsh|fish``: print the shell's completion script (Typer's, over click's shell
completion). The script asks ``keyswitch`` itself for the candidates (``_KEYSWITCH_COMPLETE``), so commands,
subcommands and options complete as they are in the installed version. Install it with, for bash,
``keyswitch completion bash > ~/.local/share/bash-completion/completions/keyswitch``; zsh: into a directory of
``$fpath`` as ``_keyswitch``; fish: ``~/.config/fish/completions/keyswitch.fish``."""

from __future__ import annotations

from enum import Enum

import typer

PROG = "keyswitch"
COMPLETE_VAR = "_KEYSWITCH_COMPLETE"


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def enable() -> None:
    """Register Typer's completion classes with click (what ``add_completion`` would do), so that a shell's
    ``_KEYSWITCH_COMPLETE=complete_bash keyswitch`` call answers with the candidates."""
    from typer.completion import completion_init

    completion_init()


def register(app: typer.Typer) -> None:
    @app.command("completion")
    def completion(shell: Shell = typer.Argument(..., help="bash, zsh or fish")) -> None:
        """Print the shell completion script (e.g. keyswitch completion bash > ~/.local/share/bash-completion/
        completions/keyswitch)."""
        from typer.completion import get_completion_script

        enable()
        typer.echo(get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell.value))
