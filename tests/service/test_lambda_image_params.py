"""The members of an image function's requests (PackageType=Image), checked before any image
is looked at: ImageConfig, Code.ImageUri, and what an image function may not have."""

from __future__ import annotations

from typing import Any

import pytest
from service_support import boto, call, config_of, serving

from runtime import InvalidParameterValueException
from runtime.config import ImageConfig
from runtime.service.lambda_params import image_config, image_uri

pytestmark = pytest.mark.usefixtures("aws_env", "no_leaked_threads")


def test_image_config_members_become_the_engines() -> None:
    assert image_config(None) is None
    assert image_config({}) is None  # an empty ImageConfig clears the overrides
    assert image_config(
        {"EntryPoint": ["/e"], "Command": ["a.b", "x"], "WorkingDirectory": "/w"}
    ) == ImageConfig(entry_point=["/e"], command=["a.b", "x"], working_directory="/w")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "ImageConfig: expected a structure"),
        ({"Cmd": ["x"]}, "unknown members Cmd"),
        ({"Command": "app.handler"}, r"ImageConfig\.Command: a list of strings"),
        ({"EntryPoint": [1]}, r"ImageConfig\.EntryPoint: a list of strings"),
        ({"WorkingDirectory": "relative"}, r"ImageConfig\.WorkingDirectory: 'relative'"),
        ({"Command": ["x"] * 1501}, r"ImageConfig\.Command: a list of at most 1,500"),
    ],
)
def test_bad_image_configs_are_named_as_the_api_names_them(value: Any, message: str) -> None:
    with pytest.raises(InvalidParameterValueException, match=message):
        image_config(value)


@pytest.mark.parametrize("code", [None, {}, {"ImageUri": ""}, {"ImageUri": 3}, "uri"])
def test_an_image_function_needs_an_image_uri(code: Any) -> None:
    with pytest.raises(InvalidParameterValueException, match="Please provide ImageUri"):
        image_uri(code)


def test_refusals_before_any_image_is_looked_at(arun: Any) -> None:
    """No Docker Engine is needed to be told what an image function cannot have."""

    async def main() -> None:
        async with serving(config_of()) as svc, boto(svc.url) as client:
            base = {
                "FunctionName": "img",
                "PackageType": "Image",
                "Role": "arn:aws:iam::000000000000:role/r",
                "Code": {"ImageUri": "some/image:latest"},
            }
            for extra, message in (
                ({"Runtime": "python3.12"}, "don't provide Handler or Runtime"),
                ({"Handler": "app.handler"}, "don't provide Handler or Runtime"),
                ({"Code": {}}, "Please provide ImageUri"),
                ({"ImageConfig": {"WorkingDirectory": "rel"}}, "WorkingDirectory"),
            ):
                with pytest.raises(client.exceptions.InvalidParameterValueException) as caught:
                    await call(client.create_function, **{**base, **extra})
                assert message in str(caught.value)
            with pytest.raises(client.exceptions.InvalidParameterValueException) as zip_cfg:
                await call(
                    client.create_function,
                    FunctionName="z",
                    Runtime="python3.12",
                    Role="arn:aws:iam::000000000000:role/r",
                    Handler="app.handler",
                    Code={"ImageUri": "some/image:latest"},
                )
            assert "PackageType is Zip" in str(zip_cfg.value)
            assert (await call(client.list_functions))["Functions"] == []

    arun(main(), timeout=60)
