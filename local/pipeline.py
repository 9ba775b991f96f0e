"""SigningPipeline in moto (spec §6, §10): the template's ASL, four Lambda functions whose invocations
run the real handlers in this process, and moto's Step Functions interpreter executing it.

moto's Lambda backend without Docker (``LambdaSimpleBackend``) would echo every payload back, so
its ``invoke`` is replaced by one that runs ``functions/<name>/app.py``; a raised exception answers
as Lambda does (``X-Amz-Function-Error: Unhandled``, ``{"errorType": <class name>, "errorMessage"}``)
so that the ASL's ``Retry``/``Catch`` match the error codes in PascalCase. Used by the tests and by
the local stack (``signer-client pipeline``).
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ASL = ROOT / "statemachines" / "signing_pipeline.asl.json"
#: What moto needs to run state machines for real, with Lambda tasks (their invoke replaced).
MOTO_STEP_FUNCTIONS = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
FUNCTIONS = {
    "authenticate": "AuthenticateFunction",
    "sign_dsse": "SignDsseFunction",
    "check_quota": "CheckQuotaFunction",
    "verify_release": "VerifyReleaseFunction",
}
BY_LOGICAL_ID = {logical_id: name for name, logical_id in FUNCTIONS.items()}
Handler = Callable[[dict[str, Any]], Any]


@dataclass
class Invocation:
    function: str
    event: dict[str, Any]
    error_type: str | None = None


def in_process_invoke(handlers: Mapping[str, Handler], invocations: list[Invocation]) -> Callable[..., bytes]:
    """A replacement for ``LambdaSimpleBackend.invoke`` that runs the function's own handler."""

    def invoke(
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        function = backend.get_function(function_name, qualifier)  # an unknown ARN fails as in Lambda
        event = json.loads(body or "{}")
        invocation = Invocation(BY_LOGICAL_ID[function.function_name], copy.deepcopy(event))
        invocations.append(invocation)
        try:
            result: Any = handlers[invocation.function](event)
        except Exception as error:
            invocation.error_type = type(error).__name__
            response_headers["x-amz-function-error"] = "Unhandled"
            result = {"errorType": invocation.error_type, "errorMessage": str(error)}
        payload = json.dumps(result).encode()
        response_headers["Content-Length"] = str(len(payload))
        return payload

    return invoke


def _deployment_package(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.write(ROOT / "functions" / name / "app.py", "app.py")
    return buffer.getvalue()


def definition(template: Mapping[str, Any], function_arns: Mapping[str, str]) -> str:
    """The ASL with the template's ``DefinitionSubstitutions`` (``!GetAtt <Function>.Arn``) applied."""
    text = ASL.read_text()
    substitutions = template["Resources"]["SigningPipeline"]["Properties"]["DefinitionSubstitutions"]
    for variable, value in substitutions.items():
        logical_id, attribute = value["Fn::GetAtt"]
        if attribute != "Arn":
            raise ValueError(f"unexpected substitution {variable}")
        text = text.replace(f"${{{variable}}}", function_arns[logical_id])
    if "${" in text:
        raise ValueError("a substitution of the ASL is not in the template")
    return text


def deploy(session: Any, template: Mapping[str, Any], account: str) -> str:
    """Create the four functions (as the template describes them) and SigningPipeline; its ARN."""
    globals_ = template["Globals"]["Function"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = session.client("iam").create_role(
        RoleName="SignerFunctionRole", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]
    function_arns = {
        logical_id: session.client("lambda").create_function(
            FunctionName=logical_id,
            Runtime=globals_["Runtime"],
            Handler=globals_["Handler"],
            Role=role,
            Code={"ZipFile": _deployment_package(name)},
        )["FunctionArn"]
        for name, logical_id in FUNCTIONS.items()
    }
    arn: str = session.client("stepfunctions").create_state_machine(
        name="SigningPipeline",
        definition=definition(template, function_arns),
        roleArn=f"arn:aws:iam::{account}:role/SigningPipelineRole",
        type="STANDARD",
    )["stateMachineArn"]
    return arn
