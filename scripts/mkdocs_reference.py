"""MkDocs hook: the reference pages' generated parts.

``reference/settings.md`` gets one row per field of ``distillery.settings.Settings`` (its
environment variable, type, default and description), ``reference/cli.md`` one section per
``distillery`` command, from the Typer app itself, and ``operations/metrics.md`` one row per
metric of each worker's Prometheus registry: the pages cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

MARK_SETTINGS = "<!-- generated: settings -->"
MARK_CLI = "<!-- generated: commands -->"
MARK_METRICS = "<!-- generated: metrics -->"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    from pydantic_core import PydanticUndefined

    from distillery.settings import ENV_PREFIX, Settings

    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "(computed)"
        elif field.default is PydanticUndefined or field.default is None:
            default = "none"
        else:
            default = f"`{field.default}`" if str(field.default) != "" else "empty"
        kind = getattr(field.annotation, "__name__", None) if isinstance(
            field.annotation, type) else None
        kind = (kind or str(field.annotation)).replace("typing.", "").replace(
            "pathlib.", "").replace("pydantic.types.", "").replace(" | ", " or ")
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{_cell(kind)}` | {_cell(default)} | "
                    f"{_cell(field.description or '')} |")
    return "\n".join(rows)


def _is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    if _is_group(command):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    return found


def commands_reference() -> str:
    import typer

    from workers.cli.main import app

    root = typer.main.get_command(app)
    out: list[str] = []
    for path, command in _walk(root, ["distillery"]):
        if _is_group(command) and len(path) == 1:
            continue
        out += [f"## `{' '.join(path)}`", ""]
        if command.help:
            out += [command.help.strip().split("\n\n")[0], ""]
        params = [p for p in command.params
                  if p.param_type_name == "option" and not getattr(p, "hidden", False)]
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        if arguments:
            out += ["Arguments: " + ", ".join(f"`{a.name.upper()}`" for a in arguments), ""]
        if params and not _is_group(command):
            out += ["| option | default | meaning |", "|---|---|---|"]
            for p in params:
                default = "" if p.default in (None, False, ()) or callable(p.default) else (
                    f"`{p.default}`")
                out.append(f"| `{' / '.join(p.opts)}` | {_cell(default)} | "
                           f"{_cell(p.help or '')} |")
            out.append("")
        if _is_group(command):
            out += ["Subcommands: " + ", ".join(f"`{n}`" for n in sorted(command.commands)), ""]
    return "\n".join(out)


def metrics_table() -> str:
    from streams.metrics import ClassifyMetrics, RefineMetrics
    from workers.teacher.metrics import TeacherMetrics
    from workers.trainer.worker import TrainerMetrics

    rows = ["| worker | metric | type | labels | meaning |", "|---|---|---|---|---|"]
    for worker, registry in (("classify", ClassifyMetrics().registry),
                             ("refine", RefineMetrics("t").registry),
                             ("teacher", TeacherMetrics("t").registry),
                             ("trainer", TrainerMetrics("t").registry)):
        for family in registry.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = sorted({k for s in family.samples for k in s.labels if k != "le"})
            if not labels:  # a labelled family with no sample yet: its declared names
                labels = sorted(getattr(registry._names_to_collectors.get(family.name),
                                        "_labelnames", ()))
            rows.append(f"| {worker} | `{name}` | {family.type} | "
                        f"{', '.join(f'`{x}`' for x in labels)} | "
                        f"{_cell(family.documentation).replace('<', '&lt;')} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARK_SETTINGS in markdown:
        markdown = markdown.replace(MARK_SETTINGS, settings_table())
    if MARK_CLI in markdown:
        markdown = markdown.replace(MARK_CLI, commands_reference())
    if MARK_METRICS in markdown:
        markdown = markdown.replace(MARK_METRICS, metrics_table())
    return markdown
