"""BoardFacts (a hello's facts, typed) and MeasuredSettings (a measurement's settings, typed):
both round-trip the JSON they came from and still read like the dicts they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_agent.protocol import BenchSettings
from hwnas_bench import BoardFacts, BoardFactsError, MeasuredSettings, Measurement
from hwnas_bench.device import Device

HELLO = {
    "agent_version": "0.1.0",
    "protocol": 1,
    "arch": "aarch64",
    "cpu_model": "Cortex-A76",
    "cores_logical": 4,
    "cores_physical": None,
    "memory_mb": 8048.3,
    "providers": ["CPUExecutionProvider"],
    "governor": {"cpu0": "performance", "cpu1": "ondemand"},
    "cpu_freq_mhz": [2400.0, None],
    "power_meters": [{"source": "hwmon:ina226", "kind": "hwmon", "scope": "board"}],
    "power_root": "/",
    "cache": {"dir": "/tmp/m", "max_bytes": 10, "models": 0},
    "heartbeat_s": 1.0,
    "new_in_a_later_agent": {"x": [1]},
}


def test_facts_round_trip_in_order_with_unknown_keys() -> None:
    facts = BoardFacts.from_mapping(HELLO)
    assert facts.to_dict() == HELLO
    assert list(facts.to_dict()) == list(HELLO)  # files written from it keep their JSON
    assert json.dumps(facts.to_dict()) == json.dumps(HELLO)
    assert facts.extra == {"new_in_a_later_agent": {"x": [1]}}
    assert BoardFacts.from_mapping(facts.to_dict()).to_dict() == HELLO


def test_facts_are_typed_and_read_like_the_dict() -> None:
    facts = BoardFacts.from_mapping(HELLO)
    assert facts.providers == ("CPUExecutionProvider",)
    assert facts["providers"] == ["CPUExecutionProvider"]  # JSON's list, as before
    assert facts.cores == 4
    assert facts.what == "Cortex-A76"
    assert facts.power_meter_sources == ["hwmon:ina226"]
    assert facts.get("device_model") is None
    assert "device_model" not in facts
    assert facts == dict(HELLO)  # a Mapping compares with the dict it came from
    with pytest.raises(KeyError):
        facts["device_model"]


def test_an_older_agent_lacks_keys() -> None:
    facts = BoardFacts.from_mapping({"agent_version": "0.0.1"})
    assert facts.providers == ()
    assert facts.power_meters == ()
    assert facts.heartbeat_s is None
    assert facts.to_dict() == {"agent_version": "0.0.1"}  # nothing added on the way back
    assert not BoardFacts()
    assert len(BoardFacts.from_mapping(HELLO)) == len(HELLO)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cores_logical", "4"),
        ("cores_logical", True),
        ("providers", "CPUExecutionProvider"),
        ("power_meters", ["hwmon"]),
        ("heartbeat_s", float("nan")),
        ("cache", []),
    ],
)
def test_a_fact_of_the_wrong_type_is_named(key: str, value: object) -> None:
    with pytest.raises(BoardFactsError, match=repr(key)) as info:
        BoardFacts.from_mapping({**HELLO, key: value})
    assert info.value.key == key


def test_facts_built_field_by_field() -> None:
    facts = BoardFacts(arch="x86_64", providers=("CPUExecutionProvider",))
    assert facts.to_dict() == {"arch": "x86_64", "providers": ["CPUExecutionProvider"]}


def test_local_hello_gives_board_facts(local_device: Device) -> None:
    facts = local_device.open()
    assert isinstance(facts, BoardFacts)
    assert local_device.facts is facts
    assert facts.agent_version
    assert facts.heartbeat_s is not None
    assert "CPUExecutionProvider" in facts.providers
    assert facts.extra == {}  # the host knows every key this agent sends


WIRE = {
    **BenchSettings(threads=2).to_wire(),
    "providers": ["CPUExecutionProvider"],
    "from_a_later_agent": 1,
}


def test_measured_settings_round_trip_and_read_like_the_dict() -> None:
    s = MeasuredSettings.from_wire(WIRE)
    assert isinstance(s, BenchSettings)
    assert s.to_wire() == WIRE
    assert list(s.to_wire()) == list(WIRE)
    assert s.threads == 2
    assert s["threads"] == 2
    assert s.get("provider") == s.provider
    assert s.providers == ["CPUExecutionProvider"]
    assert s.extra == {"from_a_later_agent": 1}
    again = s.bench_settings()
    assert type(again) is BenchSettings
    assert again.threads == 2
    again.validate()


def test_old_settings_load_with_defaults() -> None:
    s = MeasuredSettings.from_wire({"threads": 1})
    assert s.providers is None
    assert "providers" not in s.to_wire()
    assert s.min_iterations == BenchSettings().min_iterations


def test_measurement_json_keeps_the_settings_object(local_device: Device, mlp_model: Path) -> None:
    m = local_device.bench(mlp_model, min_iterations=3, min_time_s=0.0, warmup_runs=0)
    data = m.to_dict()
    assert data["settings"] == m.settings.to_wire()
    assert data["settings"]["providers"] == ["CPUExecutionProvider"]
    assert local_device.facts is not None
    assert data["board"] == local_device.facts.to_dict()
    again = Measurement.from_dict(json.loads(m.to_json()))
    assert again.settings == m.settings
    assert again.to_dict() == data
