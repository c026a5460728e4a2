"""Output contracts: declared types and counts, checked for every output group.

Engines that can re-ask a model (the DSPy engine) call :func:`contract_errors` to learn what to
correct; the runtime calls :func:`check_group` on whatever the engine finally returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ValidationError

from .errors import ContractViolation, ValidationFailed
from .spec import OutputGroup
from .types import type_name


def contract_errors(
    group: OutputGroup, outputs: Sequence[BaseModel]
) -> list[tuple[str | None, str, str, str]]:
    """Problems with ``outputs`` against ``group`` as ``(type_name, expected, actual, message)``."""
    problems: list[tuple[str | None, str, str, str]] = []
    declared = {o.type_name: o for o in group.outputs}
    counts = dict.fromkeys(declared, 0)
    for out in outputs:
        if not isinstance(out, BaseModel):
            problems.append((None, "a Pydantic model", type(out).__name__, f"output {out!r} is not a model"))
            continue
        name = type_name(type(out))
        decl = declared.get(name)
        if decl is None:
            wanted = ", ".join(sorted(declared)) or "nothing (the agent declares no outputs)"
            problems.append((name, wanted, name, f"{name} is not declared by this output group ({wanted})"))
            continue
        counts[name] += 1
        try:
            # Re-validate: catches values built with model_construct() or mutated after validation.
            # warnings=False: dumping such a value must not warn; the validation error says it all.
            decl.type.model_validate(out.model_dump(by_alias=True, warnings=False))
        except ValidationError as exc:
            problems.append((name, "valid fields", "invalid", f"{name}: {exc}"))
    for name, decl in declared.items():
        n = counts[name]
        if not decl.count_ok(n):
            problems.append((name, decl.count_text, str(n), f"expected {decl.count_text} {name}, got {n}"))
    return problems


def check_group(agent: str, group: OutputGroup, outputs: Sequence[BaseModel]) -> list[BaseModel]:
    """Enforce the contract, then ``validate`` checks, then ``where`` filters. Returns what to publish.

    Raises :class:`ContractViolation` for wrong types/counts/fields and :class:`ValidationFailed` when a
    ``validate`` callable rejects an output. Nothing of the group is published on either error.
    """
    problems = contract_errors(group, outputs)
    if problems:
        first = problems[0]
        raise ContractViolation(
            f"agent {agent!r}, output group {group.index}: " + "; ".join(p[3] for p in problems),
            agent=agent,
            group=group.index,
            type_name=first[0],
            expected=first[1],
            actual=first[2],
            errors=[p[3] for p in problems],
        )
    declared = {o.type_name: o for o in group.outputs}
    for out in outputs:
        decl = declared[type_name(type(out))]
        for check, message in decl.validate:
            try:
                ok = check(out)
            except Exception as exc:
                raise ValidationFailed(
                    f"agent {agent!r}: validate check on {decl.type_name} raised {type(exc).__name__}: {exc}"
                ) from exc
            if not ok:
                raise ValidationFailed(
                    f"agent {agent!r}: {decl.type_name} failed validation"
                    + (f": {message}" if message else f" ({getattr(check, '__name__', check)!s})")
                )
    return [o for o in outputs if (w := declared[type_name(type(o))].where) is None or w(o)]
