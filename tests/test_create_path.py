"""The one create path of the base class: validate, plan, quote, launch, and the one
purchase rule (``--max-price`` is the most paid per hour, spot or not)."""

from __future__ import annotations

import logging

import pytest

from fakes import FakeProvider
from trainctl import registry
from trainctl.api import Trainctl
from trainctl.capabilities import Capability
from trainctl.errors import BadInput, CapabilityError, NoCapacity
from trainctl.provider import ProviderFlag, Quote
from trainctl.store import Store
from trainctl.types import CreateResourceOptions


class Priced(FakeProvider):
    """Spot costs ``spot_price`` (None: unknown), on-demand ``hourly``; ``spot_full``
    makes every spot launch find no capacity."""

    name = "priced"
    flags = (ProviderFlag("shelf", "A shelf.", choices=("top", "bottom")),)
    spot_price: float | None = 0.5
    spot_full = False

    def __init__(self, root, **kw) -> None:
        super().__init__(root, **kw)
        self.launched: list[bool] = []
        self.quoted: list[bool] = []

    def quote(self, plan, *, spot):
        self.quoted.append(spot)
        return Quote(self.spot_price if spot else self.hourly, "1x TEST")

    def launch(self, plan, *, spot, progress=None):
        if spot and self.spot_full:
            raise NoCapacity("no spot TEST left")
        self.launched.append(spot)
        return super().launch(plan, spot=spot, progress=progress)


@pytest.fixture
def provider(tmp_path):
    return Priced(tmp_path, hourly=2.0)


def test_on_demand_above_the_cap_is_refused_before_launch(provider):
    with pytest.raises(NoCapacity, match=r"1x TEST costs \$2.00/h on-demand, above --max-price"):
        provider.create_resource(CreateResourceOptions(max_price=1.5))
    assert provider.launched == []


def test_on_demand_within_the_cap_launches(provider):
    status = provider.create_resource(CreateResourceOptions(max_price=2.5))
    assert provider.launched == [False] and status.warnings == []


def test_spot_above_the_cap_is_refused_and_falls_back_within_it(provider):
    provider.spot_price = 3.0
    with pytest.raises(NoCapacity, match="spot, above --max-price"):
        provider.create_resource(CreateResourceOptions(spot=True, max_price=2.5))
    status = provider.create_resource(
        CreateResourceOptions(spot=True, spot_fallback=True, max_price=2.5)
    )
    assert provider.launched == [False] and not status.spot
    assert status.warnings and "rented on-demand instead" in status.warnings[0]


def test_the_fallback_keeps_the_cap(provider):
    provider.spot_full = True
    with pytest.raises(NoCapacity) as e:
        provider.create_resource(
            CreateResourceOptions(spot=True, spot_fallback=True, max_price=1.0)
        )
    assert "no spot TEST left" in e.value.message and "the on-demand fallback" in e.value.message
    assert e.value.hint == "--max-price 2.00 or more allows it"
    assert provider.launched == []


def test_spot_without_capacity_and_no_fallback_is_no_capacity(provider):
    provider.spot_full = True
    with pytest.raises(NoCapacity, match="no spot TEST left"):
        provider.create_resource(CreateResourceOptions(spot=True))
    assert provider.quoted == []  # no cap: nothing to quote


def test_an_unknown_price_with_a_cap_is_bad_input(provider):
    provider.spot_price = None
    with pytest.raises(BadInput, match="not known, so --max-price"):
        provider.create_resource(CreateResourceOptions(spot=True, max_price=1.0))
    assert provider.launched == []


def test_a_provider_that_bids_the_cap_is_not_quoted_for_spot(tmp_path):
    class Bids(Priced):
        spot_bids_max_price = True

    provider = Bids(tmp_path)
    provider.spot_price = 99.0
    provider.create_resource(CreateResourceOptions(spot=True, max_price=1.0))
    assert provider.quoted == [] and provider.launched == [True]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (CreateResourceOptions(tags={"a": "b"}), CapabilityError, r"cannot tag machines"),
        (CreateResourceOptions(region="x"), CapabilityError, "cannot choose a region"),
        (CreateResourceOptions(extra={"host": "h"}), CapabilityError, "does not take --host"),
        (CreateResourceOptions(extra={"shelf": "side"}), BadInput, "--shelf must be one of"),
        (CreateResourceOptions(max_price=0), BadInput, "--max-price must be more than 0"),
        (CreateResourceOptions(spot_fallback=True), BadInput, "only makes sense with --spot"),
    ],
)
def test_refusals_come_before_any_quote_or_launch(provider, options, error, message):
    with pytest.raises(error, match=message):
        provider.create_resource(options)
    assert provider.quoted == [] and provider.launched == []


def test_a_flag_value_is_converted_by_its_declaration(provider):
    options = CreateResourceOptions(extra={"shelf": "TOP"})
    provider.create_resource(options)
    assert options.extra == {"shelf": "top"}


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        (ProviderFlag("n", "", kind=int, minimum=1), "3", 3),
        (ProviderFlag("p", "", kind=float, minimum=0), 0, 0.0),
    ],
)
def test_number_flags(flag, value, expected):
    assert flag.check(value) == expected


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (ProviderFlag("n", "", kind=int, minimum=1), 0, "--n must be at least 1"),
        (ProviderFlag("p", "", kind=float, minimum=0, above=True), 0, "more than 0"),
        (ProviderFlag("p", "", kind=float), True, "must be a number"),
        (ProviderFlag("p", "", kind=float), "lots", "must be a number"),
        (ProviderFlag("env", "", kind=dict), "A=1", "must be a mapping"),
    ],
)
def test_bad_flag_values(flag, value, message):
    with pytest.raises(BadInput, match=message):
        flag.check(value)


def test_capability_reasons_can_depend_on_the_request(tmp_path):
    class NoSpotStop(Priced):
        capabilities = Priced.capabilities | {Capability.STOP_START}

        @classmethod
        def unsupported_reason(cls, capability, request=None):
            if capability is Capability.STOP_START and request is not None and request.spot:
                return "a spot machine cannot be stopped here"
            return super().unsupported_reason(capability, request)

    assert NoSpotStop.supports(Capability.STOP_START)
    assert not NoSpotStop.supports(Capability.STOP_START, CreateResourceOptions(spot=True))
    assert not Priced.supports(Capability.STOP_START)


def test_the_api_passes_warnings_to_its_callback_and_never_prints(
    tmp_path, capsys, caplog, monkeypatch
):
    # the CLI's own handler, if an in-process CLI test installed it, is not the library's
    monkeypatch.setattr(logging.getLogger("trainctl"), "handlers", [])

    class Registered(Priced):
        spot_full = True

        def __init__(self) -> None:
            super().__init__(tmp_path / "m", hourly=1.0)

    registry.register(Registered, "priced")
    try:
        seen: list[str] = []
        tc = Trainctl(Store(tmp_path / "state.db"), warn=seen.append)
        tc.create("priced", CreateResourceOptions(spot=True, spot_fallback=True))
        assert len(seen) == 1 and "rented on-demand instead" in seen[0]
        with caplog.at_level(logging.WARNING, logger="trainctl"):
            Trainctl(Store(tmp_path / "state.db")).create(
                "priced", CreateResourceOptions(spot=True, spot_fallback=True)
            )
        assert any("rented on-demand instead" in r.getMessage() for r in caplog.records)
        assert capsys.readouterr().err == ""
    finally:
        registry.unregister("priced")
