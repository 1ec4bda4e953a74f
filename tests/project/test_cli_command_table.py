"""`autotune <command>` imports only its command's module: the routing table must name every command of the app and
the module that registers it."""

from __future__ import annotations

from autotune.cli.main import COMMAND_MODULES, app


def _registered_modules() -> dict[str, str]:
    """Command name -> the module (under autotune.cli) whose import registers it."""
    modules: dict[str, str] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        name = command.name or command.callback.__name__.replace("_", "-")
        modules[name] = command.callback.__module__
    for group in app.registered_groups:
        instance = group.typer_instance
        assert group.name and instance is not None
        callbacks = [c.callback for c in instance.registered_commands if c.callback is not None]
        group_modules = {callback.__module__ for callback in callbacks}
        assert len(group_modules) == 1, f"group {group.name} is registered from several modules: {group_modules}"
        modules[group.name] = group_modules.pop()
    return {name: module.removeprefix("autotune.cli.") for name, module in modules.items()}


def test_table_routes_every_command_to_the_module_that_registers_it() -> None:
    assert _registered_modules() == COMMAND_MODULES
