"""The local provider and the in-memory fake pass the conformance suite."""

from __future__ import annotations

import sys

import pytest

from conformance import ProviderConformance
from fakes import FakeProvider
from trainctl.providers.local import LocalProvider
from trainctl.types import CreateResourceOptions


class TestLocalProvider(ProviderConformance):
    python = sys.executable

    @pytest.fixture
    def provider(self):
        return LocalProvider()

    @pytest.fixture
    def create_options(self):
        return CreateResourceOptions(name="conformance")

    @pytest.fixture
    def foreign_id(self):
        pytest.skip("a local workspace exists only when trainctl makes it")

    def unknown_id(self) -> str:
        return "local-00000000"


class TestFakeProvider(ProviderConformance):
    python = sys.executable

    @pytest.fixture
    def provider(self, tmp_path):
        return FakeProvider(tmp_path / "machines")

    @pytest.fixture
    def create_options(self):
        return CreateResourceOptions(name="conformance")

    @pytest.fixture
    def foreign_id(self):
        pytest.skip("the in-memory fake holds only the machines trainctl made")
