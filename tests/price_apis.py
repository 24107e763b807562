"""Price APIs on loopback for refresh tests: moto for AWS, the RunPod fake (import
the fixtures)."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


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


@pytest.fixture
def runpod_api(monkeypatch):
    """The RunPod fake (no machines: price refresh needs none), with the environment
    pointing the runpod provider at it. Fails the test on any OpenAPI violation."""
    from fake_runpod import FakeRunPod

    with FakeRunPod() as server:
        monkeypatch.setenv("RUNPOD_API_KEY", server.api_key)
        monkeypatch.setenv("TRAINCTL_RUNPOD_API_URL", server.url)
        monkeypatch.setenv("TRAINCTL_RUNPOD_GRAPHQL_URL", server.graphql_url)
        yield server
        assert server.violations == []
