"""Price APIs on loopback for refresh tests: the AWS tests' moto server (import the
fixture), and helpers; the RunPod fake's machine-less fixture is ``runpod_api`` in its
plugin."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def moto_url():
    """The one moto server of the session (see ``aws_support``)."""
    from aws_support import server_url

    return server_url()


def aws_env(monkeypatch, url):
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
