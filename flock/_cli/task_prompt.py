"""How ``flock tasks`` shows tasks and asks for an answer, field by field, from their JSON schema.

Works on a task's JSON (what ``GET /tasks/{id}`` returns and ``TaskInfo.to_json()`` gives), so both
modes of the command share it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def render_tasks(tasks: list[dict[str, Any]]) -> str:
    """Open tasks as a table (or a line saying there are none)."""
    if not tasks:
        return "no open tasks"
    rows = [["ID", "AGENT", "CREATED", "DEADLINE", "PROMPT"]]
    for task in tasks:
        rows.append(
            [
                task["id"],
                task["agent"],
                task["created_at"][:19],
                (task.get("deadline") or "-")[:19],
                _clip(task.get("prompt") or "", 40),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def render_task(task: dict[str, Any]) -> str:
    """One task: what is asked, its inputs and the fields of the answer."""
    lines = [
        f"task {task['id']} ({task['status']})",
        f"agent:    {task['agent']}",
        f"prompt:   {task.get('prompt') or '-'}",
        f"created:  {task['created_at']}",
        f"deadline: {task.get('deadline') or 'none'}",
        "inputs:",
    ]
    for item in task.get("inputs", []):
        lines.append(f"  {item['type']} {item['id']}")
        lines += [f"    {line}" for line in json.dumps(item["payload"], indent=2).splitlines()]
    lines.append(f"answer ({task.get('output_type') or 'keyed by type name'}):")
    for name, spec, required in _fields(task["output_schema"]):
        lines.append(f"  {name}: {_kind(spec)}{' (required)' if required else ''}")
    if task.get("default") is not None:
        lines.append(f"default at the deadline: {json.dumps(task['default'])}")
    return "\n".join(lines)


def ask_payload(task: dict[str, Any], ask: Callable[[str], str], say: Callable[[str], None]) -> Any:
    """Ask for each field of the answer; empty input keeps a field's default (or leaves it out)."""
    say(render_task(task))
    answer: dict[str, Any] = {}
    for name, spec, required in _fields(task["output_schema"]):
        while True:
            text = ask(f"{name} ({_kind(spec)}{', required' if required else ''}): ").strip()
            if not text and not required:
                break
            try:
                answer[name] = _parse(text, spec)
                break
            except ValueError as exc:
                say(f"  {exc}; try again")
    return answer


def _fields(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    required = set(schema.get("required", []))
    return [(n, s, n in required) for n, s in schema.get("properties", {}).items()]


def _kind(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return "one of " + ", ".join(json.dumps(v) for v in spec["enum"])
    if "anyOf" in spec:
        return " or ".join(_kind(s) for s in spec["anyOf"])
    if "$ref" in spec:
        return "object (JSON)"
    kind = spec.get("type", "JSON")
    return f"{kind} (JSON)" if kind in ("object", "array") else str(kind)


def _parse(text: str, spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("y", "yes", "true", "1"):
            return True
        if lowered in ("n", "no", "false", "0"):
            return False
        raise ValueError("answer yes or no")
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError("a whole number, please") from None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise ValueError("a number, please") from None
    if kind == "string" or ("enum" in spec and all(isinstance(v, str) for v in spec["enum"])):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if "anyOf" in spec:  # e.g. str | None: a plain word is the string
            return text
        raise ValueError("this field takes JSON") from None


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
