"""Every input the program passes is one pulumi-aws declares, and no required input is missing.

Pulumi's mocks accept any property, so a misspelt key in a nested dict (``{"volume_sise": 8}``)
would pass every other test and fail only at ``pulumi up``. This walks each recorded resource's
inputs against the provider SDK's input types.
"""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cache
from typing import Any

import pytest
from stack_helpers import SECRET_SIGNATURE

from resources import aws_contract

ARGS_REFERENCE = re.compile(r"ForwardRef\('(\w+Args)'\)")


@cache
def _module(type_token: str):
    _, module_path, _ = type_token.split(":")
    return importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")


@cache
def _fields(args_class: type) -> dict[str, str]:
    """Pulumi (camelCase) name -> annotation text, for an input type."""
    fields = {}
    for member in vars(args_class).values():
        if isinstance(member, property) and hasattr(member.fget, "_pulumi_name"):
            fields[member.fget._pulumi_name] = str(member.fget.__annotations__.get("return"))
    return fields


@cache
def _required(args_class: type) -> frozenset[str]:
    snake_to_pulumi = {
        name: member.fget._pulumi_name
        for name, member in vars(args_class).items()
        if isinstance(member, property) and hasattr(member.fget, "_pulumi_name")
    }
    return frozenset(
        snake_to_pulumi[name]
        for name, parameter in inspect.signature(args_class.__init__).parameters.items()
        if name in snake_to_pulumi and parameter.default is inspect.Parameter.empty
    )


@cache
def _resource_args(module, class_name: str) -> type:
    """The Args class defined beside a resource (names can collide with nested input types, e.g.
    s3's BucketVersioningArgs, so take the one declared in the resource's own file)."""
    resource_module = importlib.import_module(getattr(module, class_name).__module__)
    (args,) = [
        value
        for name, value in vars(resource_module).items()
        if name.endswith("Args") and isinstance(value, type) and value.__module__ == resource_module.__name__
    ]
    return args


def _nested_class(annotation: str, module) -> type | None:
    match = ARGS_REFERENCE.search(annotation)
    if not match:
        return None
    return getattr(module._inputs, match.group(1), None) or getattr(module, match.group(1), None)


def _check(value: dict[str, Any], args_class: type, module, path: str, problems: list[str]) -> None:
    fields = _fields(args_class)
    for key in _required(args_class) - set(value):
        problems.append(f"{path}: missing required {key}")
    for key, item in value.items():
        if key not in fields:
            problems.append(f"{path}.{key}: not an input of {args_class.__name__}")
            continue
        nested = _nested_class(fields[key], module)
        if nested is None:
            _check_scalar(item, fields[key], f"{path}.{key}", problems)
            continue
        for element in item if isinstance(item, list) else [item]:
            if isinstance(element, dict) and SECRET_SIGNATURE not in element:
                _check(element, nested, module, f"{path}.{key}", problems)


# Scalar Python types as Pulumi's wire format returns them, and the annotation word that admits them.
SCALAR_TYPES = ((bool, "bool"), (str, "str"), (float, "float"), (int, "int"))


def _check_scalar(value: Any, annotation: str, path: str, problems: list[str]) -> None:
    """A scalar (or list of scalars) matches its declared type; numbers arrive as floats."""
    for element in value if isinstance(value, list) else [value]:
        if isinstance(element, dict):
            continue
        for python_type, word in SCALAR_TYPES:
            if isinstance(element, python_type):
                admitted = {word} | ({"int", "float"} if word in ("int", "float") else set())
                if not any(re.search(rf"\b{w}\b", annotation) for w in admitted):
                    problems.append(f"{path}: {element!r} is not {annotation}")
                break


def _problems(record) -> list[str]:
    problems: list[str] = []
    for resource in record.resources:
        module = _module(resource.type)
        class_name = resource.type.split(":")[-1]
        _check(resource.inputs, _resource_args(module, class_name), module, resource.name, problems)
    return problems


@pytest.mark.parametrize("stack", aws_contract.ENVIRONMENTS)
def test_inputs_are_declared_by_the_provider(stacks, stack):
    assert _problems(stacks[stack]) == []


def test_inputs_of_the_api_are_declared_by_the_provider(dev_with_api):
    assert _problems(dev_with_api) == []


def test_the_check_catches_a_misspelt_nested_key(stacks):
    (template,) = stacks["dev"].of_type("aws:ec2/launchTemplate:LaunchTemplate")
    module = _module(template.type)
    inputs = {
        **template.inputs,
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSise": 8}}],
    }
    problems: list[str] = []
    _check(inputs, module.LaunchTemplateArgs, module, "nat", problems)
    assert problems == [
        "nat.blockDeviceMappings.ebs.volumeSise: not an input of LaunchTemplateBlockDeviceMappingEbsArgs"
    ]


def test_the_check_catches_a_value_of_the_wrong_type(stacks):
    (template,) = stacks["dev"].of_type("aws:ec2/launchTemplate:LaunchTemplate")
    module = _module(template.type)
    interface = {**template.inputs["networkInterfaces"][0], "associatePublicIpAddress": True}
    problems: list[str] = []
    _check(
        {**template.inputs, "networkInterfaces": [interface]},
        module.LaunchTemplateArgs,
        module,
        "nat",
        problems,
    )
    assert len(problems) == 1 and problems[0].startswith(
        "nat.networkInterfaces.associatePublicIpAddress: True is not"
    )
