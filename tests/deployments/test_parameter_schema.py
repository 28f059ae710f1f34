"""The deployments' "Custom run" form explains itself: every parameter has a description, and the
size sets are a choice of the built-in ones (no server needed: the schema is what `prefect deploy` sends)."""

from typing import get_args

import pytest
from prefect.utilities.callables import parameter_schema

from imagegen.sizes import BUILTIN_SIZE_SETS, BuiltinSizeSet
from imagegen_flows.flows.campaign import campaign_flow
from imagegen_flows.flows.size_sets import size_set_flow


@pytest.mark.parametrize("flow", [campaign_flow, size_set_flow], ids=lambda f: f.name)
def test_every_flow_parameter_has_a_description(flow):
    schema = parameter_schema(flow.fn)
    properties = schema.model_dump()["properties"]
    assert set(properties) == set(flow.parameters.properties)
    undocumented = [name for name, prop in properties.items() if len(prop.get("description") or "") < 20]
    assert undocumented == []


def test_size_sets_is_a_choice_of_the_built_in_sets():
    assert set(get_args(BuiltinSizeSet)) == set(BUILTIN_SIZE_SETS)
    schema = parameter_schema(size_set_flow.fn).model_dump()
    items = schema["properties"]["size_sets"]["items"]
    enum = items.get("enum") or schema["definitions"][items["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert sorted(enum) == sorted(BUILTIN_SIZE_SETS)
