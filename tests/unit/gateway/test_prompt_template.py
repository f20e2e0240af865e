"""Safe rendering of Go-template custom prompts."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInput
from services.gateway.prompt_template import render_template

VARS = {"Username": "alice", "ChannelName": "town"}


def test_whitelisted_variables_are_substituted_with_go_spacing_and_trim_markers() -> None:
    assert render_template("Hi {{.Username}} in {{ .ChannelName }}", VARS) == "Hi alice in town"
    assert render_template("a  {{- .Username -}}  b{{/* note */}}", VARS) == "aaliceb"


@pytest.mark.parametrize(
    "template", ['{{ call .Time "x" }}', "{{ .Username.Secret }}", "{{ .Password }}", "{{ if 1 }}"]
)
def test_anything_but_a_whitelisted_variable_is_refused(template: str) -> None:
    with pytest.raises(InvalidInput):
        render_template(template, VARS)
