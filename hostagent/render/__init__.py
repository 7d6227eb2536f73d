"""Renderers: data in, file text out (the agent's config, its service definition, the agent-group config)."""
from __future__ import annotations

from pathlib import Path


def template(name: str) -> str:
    """A service template from systemd/ (the package hostagent.systemd once installed)."""
    try:
        from importlib.resources import files

        return (files("hostagent.systemd") / name).read_text()
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
        # A source checkout that was not pip-installed: <repo>/systemd.
        return (Path(__file__).resolve().parents[2] / "systemd" / name).read_text()


def render_template(name: str, **values: object) -> str:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    return env.from_string(template(name)).render(**values)
