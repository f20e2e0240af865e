"""Safe rendering of the plugin's Go text/template prompts: ``{{.Var}}`` substitutions only.

Custom prompts are written by users, so nothing in them may execute: no pipelines, functions,
method calls or field walks. Only whitelisted variables are substituted; Go's trim markers
(``{{-`` / ``-}}``) and comments (``{{/* */}}``) are honoured; anything else is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from services.common.errors import InvalidInput

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_VARIABLE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")


def render_template(template: str, variables: Mapping[str, str]) -> str:
    """Substitute ``{{.Name}}`` for each name in ``variables``; InvalidInput for anything else."""
    out: list[str] = []
    position = 0
    trim_next = False
    for match in _ACTION.finditer(template):
        text = template[position : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        out.append(text)
        expression = match.group(2).strip()
        if expression.startswith("/*") and expression.endswith("*/"):
            pass
        elif (variable := _VARIABLE.fullmatch(expression)) is not None:
            name = variable.group(1)
            if name not in variables:
                raise InvalidInput(f"unknown template variable .{name}; available: {', '.join(sorted(variables))}")
            out.append(variables[name])
        else:
            raise InvalidInput(f"unsupported template action {{{{{expression}}}}}: only {{{{.Variable}}}} is allowed")
        position = match.end()
        trim_next = bool(match.group(3))
    tail = template[position:]
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)
