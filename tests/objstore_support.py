"""An S3-compatible store on loopback for the object store tests: moto's server, reached
through an endpoint URL as any S3-compatible store (R2, B2, MinIO) would be."""

from __future__ import annotations

import logging
import secrets

import boto3
from moto.server import ThreadedMotoServer

_state: dict[str, str] = {}
#: the access key the tests hand to trainctl (moto takes any)
KEYS = {"AccessKeyId": "AKIASTORETESTKEY0001", "SecretAccessKey": "store-secret-Zq81xk"}


def endpoint() -> str:
    """The session's S3 server (started once)."""
    if "url" not in _state:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        _state["url"] = f"http://{host}:{port}"
    return _state["url"]


def s3():
    return boto3.client(
        "s3",
        endpoint_url=endpoint(),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def new_bucket() -> str:
    name = "store-" + secrets.token_hex(4)
    s3().create_bucket(Bucket=name)
    return name


def objects(bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix``: key -> body."""
    client = s3()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found
