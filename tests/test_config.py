"""Board configuration: every mistake is one line naming the file, board and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hwnas_bench import BenchSettings, ConfigError, TargetSpec, load_config
from hwnas_bench.config import find_config
from hwnas_bench.targets import (
    BOARD_BENCH_KEYS,
    LOCAL,
    BenchRule,
    serial_target,
    ssh_target,
    table_entries,
)


def write(tmp_path: Path, text: str, name: str = "hwnas.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_boards_with_tags_and_profiles(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[boards.pi5-a]
transport = "ssh"
host = "10.0.0.5"
profile = "raspberry-pi-5"
tags = ["pi5", "lab"]

[boards.uart]
transport = "serial"
url = "socket://10.0.0.9:7777"
baud = 921600
""",
    )
    config = load_config(path)
    assert set(config.boards) == {"local", "pi5-a", "uart"}
    assert config.target("pi5-a").options == {"host": "10.0.0.5"}
    assert [s.name for s in config.with_tag("pi5")] == ["pi5-a"]
    assert config.target("uart").options["baud"] == 921600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[boards.pi]\ntransport = "ssh"\nhots = "x"\n',
            "board 'pi': key 'hots': unknown key for a ssh board (did you mean 'host'?)",
        ),
        (
            '[boards.pi]\ntransport = "ssh"\nhost = "x"\nprofile = "rasberry-pi-5"\n',
            "board 'pi': key 'profile': unknown hardware profile 'rasberry-pi-5' "
            "(did you mean 'raspberry-pi-5'?)",
        ),
        ('[boards.pi]\ntransport = "ssh"\n', "board 'pi': key 'host': required for a ssh board"),
        (
            '[boards.pi]\ntransport = "telnet"\n',
            "board 'pi': key 'transport': unknown transport 'telnet'",
        ),
        (
            '[boards.pi]\ntransport = "ssh"\nhost = "x"\nport = "22"\n',
            "board 'pi': key 'port': must be int, got '22'",
        ),
        (
            '[boards.pi]\ntransport = "serial"\nurl = "/dev/ttyUSB0"\nbaud = true\n',
            "board 'pi': key 'baud': must be int, got True",
        ),
        (
            '[board.pi]\ntransport = "ssh"\n',
            "key 'board': unknown top-level key (did you mean 'boards'?)",
        ),
        ("[boards.pi\n", "not valid TOML"),
    ],
)
def test_mistakes_name_file_board_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(str(path))
    assert message in line


def test_pyproject_tool_table_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path,
        '[project]\nname = "x"\n\n[tool.hwnas.boards.nano]\ntransport = "ssh"\nhost = "nano"\n',
        "pyproject.toml",
    )
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delenv("HWNAS_CONFIG", raising=False)
    assert find_config() == tmp_path / "pyproject.toml"
    assert load_config().target("nano").options["host"] == "nano"


def test_env_var_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[boards.x]\ntransport = "local"\n', "elsewhere.toml")
    monkeypatch.setenv("HWNAS_CONFIG", str(path))
    assert "x" in load_config().boards


def test_unknown_board_suggests(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[boards.pi5]\ntransport = "ssh"\nhost = "h"\n'))
    with pytest.raises(
        ConfigError,
        match=r"no board named 'pi4' in .*hwnas.toml; known: local, pi5 \(did you mean 'pi5'\?\)",
    ):
        config.target("pi4")


def test_unknown_target_has_its_own_error_type(tmp_path: Path) -> None:
    """Callers (the pytest plugin) tell "names nothing" apart from other config mistakes."""
    from hwnas_bench.errors import UnknownTargetError

    config = load_config(write(tmp_path, '[boards.pi5]\ntransport = "ssh"\nhost = "h"\n'))
    with pytest.raises(UnknownTargetError, match="no board named 'pi4'"):
        config.target("pi4")
    assert config.target("local").transport == "local"  # built in, with or without a file


def test_token_comes_from_the_environment_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(
        write(
            tmp_path,
            '[boards.a]\ntransport = "serial"\nurl = "socket://h:1"\n\n'
            '[boards.b]\ntransport = "serial"\nurl = "socket://h:1"\ntoken = "from-file"\n',
        )
    )
    monkeypatch.setenv("HWNAS_AGENT_TOKEN", "from-env")
    assert config.target("a").device().token == "from-env"
    assert config.target("b").device().token == "from-file"
    assert config.target("b").device(token="given").token == "given"
    assert "from-file" not in repr(config.target("b"))


def test_board_bench_table_lands_in_the_spec_and_wins(tmp_path: Path) -> None:
    """Two boards on one machine, measured two ways: each board's table over the caller's."""
    config = load_config(
        write(
            tmp_path,
            """
[boards.one-thread]
transport = "local"

[boards.one-thread.bench]
threads = 1
cpus = [0]
graph_optimization = "basic"

[boards.pinned]
transport = "local"
bench = {threads = 2, inter_op_threads = 1, cpus = "0-1", governor = "performance"}

[boards.plain]
transport = "local"
""",
        )
    )
    one = config.target("one-thread")
    assert one.bench == {"threads": 1, "cpus": [0], "graph_optimization": "basic"}
    pinned = config.target("pinned")
    assert pinned.bench == {
        "threads": 2,
        "inter_op_threads": 1,
        "cpus": [0, 1],  # the cpuset string, as --cpus takes it, becomes the list
        "governor": "performance",
    }
    assert config.target("plain").bench == {}

    base = BenchSettings(threads=4, min_time_s=2.5, max_time_s=9.0, seed=7, power_meter="rapl")
    chosen = one.with_bench(base)
    assert (chosen.threads, chosen.cpus, chosen.graph_optimization) == (1, [0], "basic")
    # what the board does not set stays the caller's
    assert (chosen.min_time_s, chosen.max_time_s, chosen.seed) == (2.5, 9.0, 7)
    assert chosen.power_meter == "rapl"
    assert chosen.provider == base.provider
    assert base.threads == 4  # a new object, the caller's settings untouched
    chosen.cpus.append(1)  # type: ignore[union-attr]
    assert one.bench["cpus"] == [0]  # the board's table is not shared with the result
    assert config.target("plain").with_bench(base) == base
    # a flag of this run wins over the table under FLAG_WINS (bench, profile, pytest), the
    # table wins under TABLE_WINS (search, compress): one function, the rule named
    flagged = one.with_bench(base, rule=BenchRule.FLAG_WINS, given=("threads",))
    assert (flagged.threads, flagged.cpus, flagged.graph_optimization) == (4, [0], "basic")
    assert one.with_bench(base, rule=BenchRule.TABLE_WINS, given=("threads",)).threads == 1
    assert table_entries(None, BenchRule.TABLE_WINS) == {}


@pytest.mark.parametrize(
    ("bench", "message"),
    [
        (
            "thread = 2",
            "board 'pi': key 'bench.thread': unknown key for a board's bench table "
            "(did you mean 'threads'?)",
        ),
        ("min_time_s = 5.0", "key 'bench.min_time_s': unknown key for a board's bench table"),
        ('threads = "two"', "key 'bench.threads': threads must be an integer >= 0, got 'two'"),
        ("threads = true", "key 'bench.threads': threads must be an integer >= 0, got True"),
        ("threads = -1", "key 'bench.threads': threads must be an integer >= 0, got -1"),
        ("cpus = [-1]", "key 'bench.cpus': cpus must be a non-empty list of distinct CPU"),
        ("cpus = []", "key 'bench.cpus': cpus must be a non-empty list"),
        ('cpus = "3-1"', "key 'bench.cpus': range '3-1' runs backwards"),
        ('graph_optimization = "max"', "key 'bench.graph_optimization': graph_optimization"),
        ('governor = "fast; reboot"', "key 'bench.governor': governor must be a cpufreq"),
        ("provider = 1", "key 'bench.provider': provider must be a non-empty string"),
    ],
)
def test_bench_table_mistakes_name_the_key(tmp_path: Path, bench: str, message: str) -> None:
    path = write(tmp_path, f'[boards.pi]\ntransport = "local"\n\n[boards.pi.bench]\n{bench}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: ")
    assert message in line


def test_bench_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[boards.pi]\ntransport = "local"\nbench = 2\n')
    with pytest.raises(ConfigError, match=r"board 'pi': key 'bench': must be a table"):
        load_config(path)


def test_shorthand_targets_have_no_bench_table() -> None:
    for spec in (LOCAL, ssh_target("pi@pi5.local:2222"), serial_target("/dev/ttyUSB0@921600")):
        assert spec.bench == {}
        assert spec.with_bench(BenchSettings(threads=3)) == BenchSettings(threads=3)


def test_a_spec_built_in_code_refuses_a_key_a_board_cannot_set() -> None:
    assert TargetSpec("x", "local", bench={"threads": 2}).bench == {"threads": 2}
    with pytest.raises(ConfigError, match=r"board 'x': key 'bench.max_time_s'"):
        TargetSpec("x", "local", bench={"max_time_s": 1.0})


def test_bench_keys_are_bench_settings_fields() -> None:
    """BOARD_BENCH_KEYS names fields that exist: a rename in the protocol fails here."""
    names = {f.name for f in dataclasses.fields(BenchSettings)}
    assert set(BOARD_BENCH_KEYS) <= names
    assert not {"min_time_s", "max_time_s", "min_iterations", "warmup_runs"} & set(BOARD_BENCH_KEYS)


def test_targets_list_and_farm_status_show_the_bench_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwnas_bench.cli.main import main

    monkeypatch.setenv("COLUMNS", "250")  # rich would wrap the cell otherwise
    path = write(
        tmp_path,
        '[boards.pinned]\ntransport = "local"\nprofile = "raspberry-pi-5"\n'
        "bench = {threads = 2, cpus = [0, 1, 2]}\n\n"
        '[boards.plain]\ntransport = "local"\n',
    )
    assert main(["targets", "list", "--config", str(path)]) == 0
    assert "threads=2, cpus=0-2" in capsys.readouterr().out
    assert main(["farm", "status", "--config", str(path)]) == 0
    assert "threads=2, cpus=0-2" in capsys.readouterr().out
    assert main(["targets", "show", "pinned", "--config", str(path)]) == 0
    assert "bench table of pinned" in capsys.readouterr().out
    assert main(["targets", "show", "raspberry-pi-5", "--config", str(path)]) == 0
    assert "bench table" not in capsys.readouterr().out  # a profile, not a board
