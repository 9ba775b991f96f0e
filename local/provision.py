"""Create the template's AWS resources in moto and derive the functions' environment from it.

``template.yaml`` is the only description of the resources: this module reads its tables,
keys, aliases, secrets and buckets, creates them, and resolves
``Globals.Function.Environment.Variables`` (``!Ref``/``!GetAtt`` of parameters and
resources) exactly as CloudFormation would, with local parameter values.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsic functions (``!Ref``, ``!GetAtt`` …)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.load(handle, Loader=_CfnLoader)


class Provisioner:
    """Creates the resources of one template in the AWS endpoint the given session points at."""

    def __init__(self, session: Any, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self.session = session
        self.template = template
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters)
        self.physical: dict[str, dict[str, str]] = {}  # logical id → {"Ref": …, "Arn": …}
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def create_all(self) -> dict[str, dict[str, str]]:
        resources = self.template["Resources"]
        order = [
            "AWS::DynamoDB::Table",
            "AWS::KMS::Key",
            "AWS::KMS::Alias",
            "AWS::SecretsManager::Secret",
            "AWS::S3::Bucket",
        ]
        for kind in order:
            for logical_id, resource in resources.items():
                if resource["Type"] == kind:
                    getattr(self, "_" + kind.split("::", 1)[1].replace("::", "_").lower())(
                        logical_id, resource.get("Properties", {})
                    )
        return self.physical

    def _dynamodb_table(self, logical_id: str, props: Mapping[str, Any]) -> None:
        client = self.client("dynamodb")
        args: dict[str, Any] = {
            "TableName": logical_id,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        arn = client.create_table(**args)["TableDescription"]["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and self.resolve(ttl.get("Enabled", False)) in (True, "true"):
            client.update_time_to_live(
                TableName=logical_id,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        self.physical[logical_id] = {"Ref": logical_id, "Arn": arn}

    def _kms_key(self, logical_id: str, props: Mapping[str, Any]) -> None:
        meta = self.client("kms").create_key(
            KeySpec=props.get("KeySpec", "SYMMETRIC_DEFAULT"),
            KeyUsage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
            Description=str(self.resolve(props.get("Description", logical_id))),
            Tags=[
                {"TagKey": t["Key"], "TagValue": str(self.resolve(t["Value"]))} for t in props.get("Tags", [])
            ],
        )["KeyMetadata"]
        self.physical[logical_id] = {"Ref": meta["KeyId"], "Arn": meta["Arn"], "KeyId": meta["KeyId"]}

    def _kms_alias(self, logical_id: str, props: Mapping[str, Any]) -> None:
        name = str(self.resolve(props["AliasName"]))
        self.client("kms").create_alias(AliasName=name, TargetKeyId=str(self.resolve(props["TargetKeyId"])))
        self.physical[logical_id] = {"Ref": name}

    def _secretsmanager_secret(self, logical_id: str, props: Mapping[str, Any]) -> None:
        secret = base64.b64encode(os.urandom(32)).decode()
        generate = props.get("GenerateSecretString") or {}
        if "SecretStringTemplate" in generate:  # CloudFormation: the template's JSON plus the generated key
            secret = json.dumps(
                {**json.loads(generate["SecretStringTemplate"]), generate["GenerateStringKey"]: secret}
            )
        arn = self.client("secretsmanager").create_secret(Name=logical_id, SecretString=secret)["ARN"]
        self.physical[logical_id] = {"Ref": arn, "Arn": arn, "Id": arn}

    def _s3_bucket(self, logical_id: str, props: Mapping[str, Any]) -> None:
        name = logical_id.lower()
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        versioning = props.get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
        self.physical[logical_id] = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}

    def resolve(self, value: Any) -> Any:
        """Resolve ``Ref``, ``Fn::GetAtt`` and ``Fn::Sub`` against parameters and resources."""
        if isinstance(value, dict) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                if argument in self.parameters:
                    return self.parameters[argument]
                if argument in self.physical:
                    return self.physical[argument]["Ref"]
                if argument == "AWS::Region":
                    return self.session.region_name
                raise KeyError(f"cannot resolve Ref {argument}")
            if name == "Fn::GetAtt":
                resource, attribute = argument
                return self.physical[resource][attribute]
            if name == "Fn::Sub" and isinstance(argument, str):
                text = argument
                for key, val in {
                    **self.parameters,
                    **{k: v["Ref"] for k, v in self.physical.items()},
                    "AWS::Region": self.session.region_name,
                    "AWS::AccountId": "123456789012",
                    "AWS::Partition": "aws",
                }.items():
                    text = text.replace("${" + key + "}", str(val))
                return text
        return value

    def function_environment(self, function: str | None = None) -> dict[str, str]:
        """The environment the template gives its functions (Globals, then the function's own)."""
        variables = dict(
            self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        if function:
            own = self.template["Resources"][function].get("Properties", {}).get("Environment", {})
            variables.update(own.get("Variables", {}))
        return {name: str(self.resolve(value)) for name, value in variables.items()}
