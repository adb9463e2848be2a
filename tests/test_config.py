"""Board configuration: every mistake is one line naming the file, board and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas_bench import ConfigError, load_config
from hwnas_bench.config import find_config


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
