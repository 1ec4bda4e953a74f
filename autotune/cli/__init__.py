"""The `autotune` command: parse arguments into models, call the library, print. No logic here.

`autotune.cli.main` registers every command (the entry point); each command module adds its own to the typer app
of `autotune.cli._app`. This package imports nothing itself, so that one command can run without the others.
"""
