"""AWS credentials, sessions, clients and error translation for the aws provider.

This is the one module that imports boto3 and botocore, inside functions only, so
importing it costs nothing; the rest of the provider calls the clients made here
and catches botocore's exceptions through ``client_error`` and ``sdk_errors``.
Endpoints are botocore's own business: ``AWS_ENDPOINT_URL`` and its per-service
variants (``AWS_ENDPOINT_URL_EC2``, ...) apply as botocore documents.
"""

from __future__ import annotations

import configparser
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ... import sdk
from ...errors import (
    BadInput,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    TrainctlError,
)
from . import quotas

#: botocore retry policy: throttled and transient failures are retried, up to 10
#: attempts in all, with exponential backoff and jitter (standard mode)
RETRIES = {"mode": "standard", "max_attempts": 10}

CREDENTIALS_HINT = (
    "run `aws configure` (or `aws sso login`), set AWS_PROFILE, "
    "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


def ec2_endpoint() -> str | None:
    """The EC2 endpoint the environment sets (botocore's variables), if any."""
    return os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL") or None


def ssm_endpoint() -> str | None:
    """The SSM endpoint the environment sets (botocore's variables), if any."""
    return os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get("AWS_ENDPOINT_URL") or None


_AUTH_CODES = {
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "RequestExpired",
}
_DENIED_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "Forbidden",
}

#: RunInstances errors that mean "no machine of that kind right now": another offer
#: may do
CAPACITY_CODES = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",  # a quota, reported as one (quotas.py)
    "Unsupported",
}
QUOTA_CODES = {"VcpuLimitExceeded", "InstanceLimitExceeded"}
#: retries of a client that must give up quickly (a catalog refresh offline)
QUICK_RETRIES = {"mode": "standard", "max_attempts": 2}
QUICK_CONNECT_TIMEOUT = 5

_CONFIG_CREDENTIAL_KEYS = (
    "aws_access_key_id",
    "credential_process",
    "role_arn",
    "sso_start_url",
    "sso_session",
    "web_identity_token_file",
)


def credentials_present() -> bool:
    """Whether the standard credential chain has a source here, looked up cheaply:
    environment variables, ``AWS_PROFILE``, the shared credentials and config files.
    No network, no SDK import."""
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return True
    if env.get("AWS_PROFILE") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return True
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return True
    files = (
        env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
        env.get("AWS_CONFIG_FILE", "~/.aws/config"),
    )
    return any(_file_has_credentials(Path(f).expanduser()) for f in files)


def _file_has_credentials(path: Path) -> bool:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError):
        return False
    return any(
        any(parser.has_option(section, key) for key in _CONFIG_CREDENTIAL_KEYS)
        for section in parser.sections()
    )


_loader: list[Any] = []


def new_session(region: str | None = None, profile: str | None = None) -> Any:
    """A boto3 session on the standard chain (``profile`` overrides ``AWS_PROFILE``).

    Sessions share one loader of botocore's API models, so a second session (another
    region) does not parse the large EC2 model again."""
    boto3 = sdk.require("boto3", "aws")
    import botocore.loaders
    import botocore.session
    from botocore.exceptions import ProfileNotFound

    if not _loader:
        _loader.append(botocore.loaders.create_loader())
    core = botocore.session.get_session()
    core.register_component("data_loader", _loader[0])
    try:
        return boto3.session.Session(
            botocore_session=core, region_name=region or None, profile_name=profile or None
        )
    except ProfileNotFound as e:
        raise CredentialsError(
            str(e), hint="check AWS_PROFILE or `profile` in the config"
        ) from None


def client(session: Any, service: str, region: str | None = None, *, quick: bool = False) -> Any:
    """A client with trainctl's retry policy, made once per session, service and region
    (making one costs tens of milliseconds; clients are thread-safe). Its successful
    answers are checked before botocore parses them (``check_answer``). A ``quick``
    client retries once and gives up connecting after a few seconds."""
    from botocore.config import Config

    cache = session.__dict__.setdefault("_trainctl_clients", {})
    key = (service, region or session.region_name, quick)
    if key not in cache:
        if quick:
            config = Config(
                retries=dict(QUICK_RETRIES),
                connect_timeout=QUICK_CONNECT_TIMEOUT,
                user_agent_extra="trainctl",
            )
        else:
            config = Config(retries=dict(RETRIES), user_agent_extra="trainctl")
        made = session.client(service, region_name=key[1], config=config)
        made.meta.events.register("before-parse", check_answer)
        cache[key] = made
    return cache[key]


@functools.cache
def _unreadable_answer() -> type[Exception]:
    from botocore.exceptions import BotoCoreError

    class UnreadableAnswer(BotoCoreError):
        fmt = "AWS answered {operation} with {what} (a proxy's page or a cut connection?)"

    return UnreadableAnswer


def _unreadable(operation: str, what: str) -> Exception:
    return _unreadable_answer()(operation=operation, what=what)


def check_answer(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """Refuse a successful answer that is not what the protocol sends (an HTML page
    from a proxy, a cut or empty body) with a ``BotoCoreError``, so that it becomes a
    one-line error: botocore would fail on it with an exception of its own
    (``ResponseParserError``, not a ``BotoCoreError``), or, for JSON services,
    return ``{"message": <the page>}`` as if it were the answer."""
    import json
    from xml.etree import ElementTree

    status = response_dict.get("status_code") or 0
    if not 200 <= status < 300 or operation_model.has_streaming_output:
        return
    body = response_dict.get("body") or b""
    protocol = operation_model.service_model.protocol
    name = operation_model.name
    if not body.strip():
        # query and ec2 answers always carry a document; REST ones may be headers only
        if protocol in ("query", "ec2") or (
            protocol == "json" and operation_model.output_shape is not None
        ):
            raise _unreadable(name, "an empty body")
        return
    if protocol in ("query", "ec2", "rest-xml"):
        try:
            tag = ElementTree.fromstring(body).tag.rpartition("}")[2]
        except ElementTree.ParseError:
            raise _unreadable(name, "a body that is not XML") from None
        if tag.lower() == "html" or (protocol != "rest-xml" and tag != f"{name}Response"):
            raise _unreadable(name, f"an XML document <{tag}> of the wrong kind")
    elif protocol in ("json", "rest-json"):
        try:
            document = json.loads(body)
        except ValueError:
            raise _unreadable(name, "a body that is not JSON") from None
        if not isinstance(document, dict):
            raise _unreadable(name, "JSON that is not an object")


def client_error() -> type[Exception]:
    """botocore's ``ClientError`` (an error answer from AWS), for ``except
    client_error() as e:``, which imports botocore only when something is raised."""
    from botocore.exceptions import ClientError

    return ClientError


def sdk_errors() -> tuple[type[Exception], ...]:
    """Every exception botocore raises for a failed call: an error answer, or none."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def error_message(error: BaseException) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "")) or str(error)


def no_region() -> BadInput:
    return BadInput(
        "no AWS region is configured",
        hint="set AWS_REGION, `region` in ~/.aws/config or [providers.aws], or pass --region",
    )


def translate(error: BaseException, action: str) -> BaseException:
    """The trainctl error for a botocore exception raised while doing ``action``
    (``error`` itself when it is not botocore's)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        TokenRetrievalError,
    )

    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(f"no usable AWS credentials found ({error})", hint=CREDENTIALS_HINT)
    if isinstance(error, TokenRetrievalError):
        return CredentialsError(f"AWS sign-in expired: {error}", hint="run `aws sso login`")
    if isinstance(error, NoRegionError):
        return no_region()
    if isinstance(error, EndpointConnectionError):
        return OperationFailed(f"cannot reach AWS to {action}: {error}")
    if isinstance(error, ClientError):
        code, message = error_code(error), error_message(error)
        if code in _AUTH_CODES:
            return CredentialsError(
                f"AWS rejected the credentials ({code}) while trying to {action}: {message}",
                hint=CREDENTIALS_HINT,
            )
        if code in _DENIED_CODES:
            return CredentialsError(
                f"not allowed to {action}: {message}",
                hint="the AWS identity in use lacks this permission",
            )
        if code.endswith(".NotFound") or code in ("NoSuchEntity", "NoSuchBucket", "404"):
            return NotFound(f"cannot {action}: {message}")
        return OperationFailed(f"cannot {action}: {code}: {message}")
    if isinstance(error, BotoCoreError):
        return OperationFailed(f"cannot {action}: {error}")
    return error


def launch_unclear(error: BaseException) -> bool:
    """Whether a RunInstances ``ClientError`` leaves its outcome unknown: an AWS-side
    failure (5xx) other than the refusals AWS also sends with a 5xx status."""
    response = getattr(error, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    known = CAPACITY_CODES | QUOTA_CODES | {"InvalidInstanceType"}
    return status >= 500 and error_code(error) not in known


def launch_refusal(error: BaseException, instance_type: str) -> TrainctlError:
    """The trainctl error for a RunInstances call AWS refused."""
    code, message = error_code(error), error_message(error)
    if code == "MaxSpotInstanceCountExceeded":
        return quotas.spot_quota_reached(instance_type, message)
    if code in CAPACITY_CODES:
        return NoCapacity(f"{code}: {message}")
    if code in QUOTA_CODES:
        return OperationFailed(
            f"AWS quota reached: {message}",
            hint="request a higher quota in the Service Quotas console",
        )
    if code == "InvalidInstanceType":
        return BadInput(f"cannot launch {instance_type}: {message}")
    found = translate(error, f"launch {instance_type}")
    assert isinstance(found, TrainctlError)
    return found


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn botocore's exceptions into trainctl's one-line errors while doing ``action``.

    Errors the caller raised itself (trainctl errors) pass through untouched."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as e:
        raise translate(e, action) from None
