"""The ``hwnas`` command: tables, JSON, and one clear line for every failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hwnas_bench import Measurement
from hwnas_bench.cli.main import main
from hwnas_bench.testing import SSHServer

FAST = ["--min-iterations", "10", "--min-time", "0.1", "--warmup-time", "0"]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("hwnas: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def test_bench_prints_a_table_and_writes_json(
    conv_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "bench",
                str(conv_model),
                "--target",
                "local",
                "--threads",
                "1",
                *FAST,
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for row in ("median ms", "p95 ms", "p99 ms", "throughput", "power"):
        assert row in printed
    m = Measurement.load(out)
    assert m.target == "local"
    assert m.settings["threads"] == 1
    assert m.latency.n >= 10


def test_missing_model_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "no/such/model.onnx"]) == 1
    assert "cannot read model no/such/model.onnx" in one_error_line(capsys)


def test_invalid_onnx_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    assert main(["bench", str(bad), *FAST]) == 1
    line = one_error_line(capsys)
    assert line.startswith("hwnas: error: local: bench: onnxruntime cannot load the model")
    assert "[invalid_model]" in line


def test_unreachable_ssh_board(capsys: pytest.CaptureFixture[str], mlp_model: Path) -> None:
    assert main(["bench", str(mlp_model), "--ssh", "pi@127.0.0.1:1", "--timeout", "5"]) == 1
    line = one_error_line(capsys)
    assert "pi@127.0.0.1:1: connect: 127.0.0.1:1" in line


def test_missing_serial_port(capsys: pytest.CaptureFixture[str], mlp_model: Path) -> None:
    assert main(["bench", str(mlp_model), "--serial", "/dev/ttyNOPE@115200"]) == 1
    assert "/dev/ttyNOPE" in one_error_line(capsys)


def test_bad_option_value(capsys: pytest.CaptureFixture[str], mlp_model: Path) -> None:
    assert main(["bench", str(mlp_model), "--min-iterations", "0"]) == 1
    assert "min_iterations" in one_error_line(capsys)


def test_unknown_board_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.pi5]\ntransport = "ssh"\nhost = "pi5.local"\n')
    assert main(["bench", str(mlp_model), "--target", "pi4", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert "no board named 'pi4'" in line
    assert str(config) in line
    assert "did you mean 'pi5'" in line


def test_typo_in_config_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.pi5]\ntransport = "ssh"\nhots = "pi5.local"\n')
    assert main(["bench", str(mlp_model), "--target", "pi5", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert f"{config}: board 'pi5': key 'hots': unknown key" in line
    assert "did you mean 'host'" in line


def test_agent_ping_and_profile(capsys: pytest.CaptureFixture[str], conv_model: Path) -> None:
    assert main(["agent", "ping"]) == 0
    facts = capsys.readouterr().out
    assert "onnxruntime" in facts
    assert "power_unavailable" in facts
    assert main(["profile", str(conv_model), "--iterations", "3", "--top", "3"]) == 0
    assert "Conv" in capsys.readouterr().out


def test_agent_deploy_over_ssh_from_config(
    sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text(sshd.board_toml("lab-pi"))
    assert main(["agent", "deploy", "lab-pi", "--config", str(config), "--force"]) == 0
    assert "agent uploaded at ~/.cache/hwnas-bench/agent/" in capsys.readouterr().out
    assert main(["agent", "deploy", "lab-pi", "--config", str(config)]) == 0
    assert "already present" in capsys.readouterr().out


def test_deploy_names_what_the_board_lacks(
    sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text(sshd.board_toml("bare", python="/usr/bin/python3"))  # no onnxruntime there
    if (
        subprocess.run(
            ["/usr/bin/python3", "-c", "import onnxruntime"], capture_output=True
        ).returncode
        == 0
    ):
        pytest.skip("the system python has onnxruntime")
    assert main(["agent", "deploy", "bare", "--config", str(config), "--force"]) == 1
    line = one_error_line(capsys)
    assert "bare: deploy: '/usr/bin/python3' on the board lacks:" in line
    assert "onnxruntime" in line
    assert "pip install" in line


def test_console_script_runs(mlp_model: Path, tmp_path: Path) -> None:
    hwnas = Path(sys.executable).parent / "hwnas"
    result = subprocess.run(
        [str(hwnas), "bench", str(mlp_model), *FAST, "--json", str(tmp_path / "m.json"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert Measurement.load(tmp_path / "m.json").latency.n >= 10


def test_unknown_profile_in_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.nano]\ntransport = "ssh"\nhost = "n"\nprofile = "jetson-nan"\n')
    assert main(["bench", str(mlp_model), "--target", "nano", "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert f"{config}: board 'nano': key 'profile': unknown hardware profile 'jetson-nan'" in line
    assert "did you mean 'jetson-nano'" in line


def test_profile_writes_a_chrome_trace(conv_model: Path, tmp_path: Path) -> None:
    import json

    trace = tmp_path / "trace.json"
    assert main(["profile", str(conv_model), "--iterations", "3", "--trace", str(trace)]) == 0
    events = json.loads(trace.read_text())
    assert any(e.get("name") == "model_run" for e in events)
    assert any(str(e.get("name", "")).endswith("_kernel_time") for e in events)
