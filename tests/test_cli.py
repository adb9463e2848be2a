"""The ``hwnas`` command: tables, JSON, and one clear line for every failure."""

from __future__ import annotations

import os
import re
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
    assert main(["bench", "no/such/model.onnx"]) == 2  # the user's to fix: exit 2
    assert "cannot read model no/such/model.onnx" in one_error_line(capsys)


#: A board whose settings name a file that is not there (nothing listens on port 1: the
#: check must come before any connection).
SSH_BOARD = '[boards.pi]\ntransport = "ssh"\nhost = "127.0.0.1"\nport = 1\n'


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["bench", "{missing}"], "cannot read model {missing}: No such file"),
        (["bench", "{tmp}"], "cannot read model {tmp}: Is a directory"),
        (["bench", "{empty}"], "model file {empty} is empty"),
        (["bench", "{model}", "--inputs", "{missing}"], "--inputs {missing}: No such file"),
        (["bench", "{model}", "--config", "{missing}"], "{missing}: cannot read: No such file"),
        (["profile", "{missing}"], "cannot read model {missing}: No such file"),
        (["profile", "{empty}"], "model file {empty} is empty"),
        (["profile", "{model}", "--config", "{missing}"], "{missing}: cannot read"),
        (["agent", "ping", "--config", "{missing}"], "{missing}: cannot read"),
        (["agent", "deploy", "pi", "--config", "{missing}"], "{missing}: cannot read"),
        (["farm", "status", "--config", "{missing}"], "{missing}: cannot read"),
        (["targets", "list", "--config", "{missing}"], "{missing}: cannot read"),
        (["targets", "show", "local", "--config", "{missing}"], "{missing}: cannot read"),
        (
            ["agent", "ping", "pi", "--config", "{identity}"],
            "board 'pi': key 'identity_file': {missing}: no such file",
        ),
        (
            ["agent", "deploy", "pi", "--config", "{identity}"],
            "board 'pi': key 'identity_file': {missing}: no such file",
        ),
        (
            ["bench", "{model}", "-t", "pi", "--config", "{ssh_config}"],
            "board 'pi': key 'ssh_config': {missing}: no such file",
        ),
        (
            ["profile", "{model}", "-t", "pi", "--config", "{identity}"],
            "board 'pi': key 'identity_file': {missing}: no such file",
        ),
    ],
)
def test_a_missing_input_file_is_one_line_and_exit_2(
    argv: list[str],
    said: str,
    tmp_path: Path,
    mlp_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every host verb, with a model, config, inputs file or a file a board's settings
    name that is missing (or a directory, or empty): one line naming it, exit 2."""
    monkeypatch.delenv("HWNAS_CONFIG", raising=False)
    monkeypatch.delenv("HWNAS_LOCK_URL", raising=False)
    monkeypatch.setenv("HWNAS_LOCK_DIR", str(tmp_path / "locks"))
    missing = tmp_path / "no" / "such.file"
    (tmp_path / "empty.onnx").write_bytes(b"")
    identity = tmp_path / "identity.toml"
    identity.write_text(SSH_BOARD + f'identity_file = "{missing}"\n')
    ssh_config = tmp_path / "ssh_config.toml"
    ssh_config.write_text(SSH_BOARD + f'ssh_config = "{missing}"\n')
    names = {
        "missing": str(missing),
        "tmp": str(tmp_path),
        "empty": str(tmp_path / "empty.onnx"),
        "model": str(mlp_model),
        "identity": str(identity),
        "ssh_config": str(ssh_config),
    }
    assert main([arg.format(**names) for arg in argv]) == 2
    assert said.format(**names) in one_error_line(capsys)


def test_a_missing_config_named_by_the_environment_is_exit_2(
    tmp_path: Path,
    mlp_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "gone.toml"
    monkeypatch.setenv("HWNAS_CONFIG", str(missing))
    for argv in (["bench", str(mlp_model)], ["agent", "ping"], ["targets", "list"]):
        assert main(argv) == 2
        assert f"{missing}: cannot read: No such file" in one_error_line(capsys)


def test_a_missing_identity_file_in_ssh_config_is_skipped_as_openssh_does(
    sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a file the board's own settings name must exist; an IdentityFile line of the
    user's ssh_config that names no file is passed over (it was a FileNotFoundError)."""
    ssh_config = tmp_path / "ssh_config"
    text = sshd.ssh_config.read_text()
    ssh_config.write_text(
        text.replace("  IdentityFile", f"  IdentityFile {tmp_path}/gone\n  IdentityFile", 1)
    )
    config = tmp_path / "hwnas.toml"
    config.write_text(sshd.board_toml("lab", ssh_config=str(ssh_config)))
    assert main(["agent", "ping", "lab", "--config", str(config), "--json"]) == 0
    assert '"agent_version"' in capsys.readouterr().out


def test_invalid_onnx_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    assert main(["bench", str(bad), *FAST]) == 1
    line = one_error_line(capsys)
    assert line.startswith("hwnas: error: local: bench: ")
    assert "onnxruntime cannot load" in line
    assert "[invalid_model]" in line


def test_unreachable_ssh_board(capsys: pytest.CaptureFixture[str], mlp_model: Path) -> None:
    assert main(["bench", str(mlp_model), "--ssh", "pi@127.0.0.1:1", "--timeout", "5"]) == 1
    line = one_error_line(capsys)
    assert "pi@127.0.0.1:1: connect: 127.0.0.1:1: connection refused" in line
    assert "Errno" not in line  # not paramiko's "[Errno None] Unable to connect to port 1"


def test_missing_serial_port(capsys: pytest.CaptureFixture[str], mlp_model: Path) -> None:
    assert main(["bench", str(mlp_model), "--serial", "/dev/ttyNOPE@115200"]) == 1
    assert "/dev/ttyNOPE" in one_error_line(capsys)


def test_bad_option_value(capsys: pytest.CaptureFixture[str], mlp_model: Path) -> None:
    """A bad option value is a usage mistake (exit 2) and names the flag, not the field."""
    assert main(["bench", str(mlp_model), "--min-iterations", "0"]) == 2
    line = one_error_line(capsys)
    assert "--min-iterations must be an integer >= 1" in line
    assert "min_iterations" not in line
    assert main(["bench", str(mlp_model), "--min-time", "5", "--max-time", "1"]) == 2
    assert "--min-time must not exceed --max-time" in one_error_line(capsys)


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_timeout_must_be_a_positive_number(
    capsys: pytest.CaptureFixture[str], mlp_model: Path, value: str
) -> None:
    assert main(["bench", str(mlp_model), "--timeout", value]) == 2
    line = one_error_line(capsys)
    assert "--timeout" in line
    assert "must be a number > 0" in line


def test_argparse_mistakes_are_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    assert main(["bench", str(mlp_model), "--threads", "many"]) == 2
    line = one_error_line(capsys)
    assert "--threads" in line
    assert "'many'" in line
    assert main(["bench"]) == 2
    assert "model" in one_error_line(capsys)


def test_serial_with_a_bad_baud_rate(capsys: pytest.CaptureFixture[str], mlp_model: Path) -> None:
    assert main(["bench", str(mlp_model), "--serial", "/dev/null@abc"]) == 2
    line = one_error_line(capsys)
    assert "bad baud rate 'abc'" in line
    assert "PORT[@BAUD]" in line


def test_garbage_inputs_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    import numpy as np

    garbage = tmp_path / "in.npz"
    garbage.write_bytes(b"this is not a zip archive at all")
    assert main(["bench", str(mlp_model), "--inputs", str(garbage), *FAST]) == 2
    line = one_error_line(capsys)
    assert f"--inputs {garbage}: not a NumPy .npz archive of arrays" in line
    assert "pickled objects are refused" in line
    assert "allow_pickle" not in line
    assert "unsafe" not in line
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros((1, 64), dtype=np.float32))
    assert main(["bench", str(mlp_model), "--inputs", str(npy), *FAST]) == 2
    assert "np.savez" in one_error_line(capsys)
    assert main(["bench", str(mlp_model), "--inputs", str(tmp_path / "none.npz")]) == 2
    assert "none.npz: No such file" in one_error_line(capsys)


def test_agent_build_to_a_directory_or_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["agent", "build", str(tmp_path)]) == 2
    assert f"{tmp_path} is a directory" in one_error_line(capsys)
    target = tmp_path / "new" / "dir" / "agent.pyz"
    assert main(["agent", "build", str(target)]) == 0
    assert target.stat().st_size > 1000
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["agent", "build", str(blocked / "agent.pyz")]) == 1
    assert "cannot write" in one_error_line(capsys)


def test_measured_input_shapes_and_defaulted_dims_are_shown(
    capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    assert main(["bench", str(mlp_model), *FAST]) == 0
    out = capsys.readouterr().out
    assert re.search(r"input x .*1x64 float32", out), out
    assert "dim 'batch' not given: measured with 1; set it with --dim batch=N" in out
    assert main(["bench", str(mlp_model), *FAST, "--dim", "batch=8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"input x .*8x64 float32", out), out
    assert "not given" not in out


def test_misspelt_dim_is_refused_naming_the_real_one(
    capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    assert main(["bench", str(mlp_model), *FAST, "--dim", "bacth=8"]) == 2  # a usage mistake
    line = one_error_line(capsys)
    assert "bacth" in line
    assert "batch" in line


@pytest.mark.parametrize(
    ("text", "cpus"), [("3", [3]), ("0,2-3", [0, 2, 3]), ("4-7", [4, 5, 6, 7]), (" 1 , 0 ", [1, 0])]
)
def test_cpu_lists(text: str, cpus: list[int]) -> None:
    from hwnas_bench.config import parse_cpu_list

    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "3-1", "1,1", "-2", "0,,1"])
def test_bad_cpu_lists_are_usage_errors(
    capsys: pytest.CaptureFixture[str], mlp_model: Path, text: str
) -> None:
    assert main(["bench", str(mlp_model), "--cpus", text]) == 2
    assert "--cpus" in one_error_line(capsys)


def test_bench_takes_the_boards_table_where_no_flag_is_given(
    tmp_path: Path, mlp_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text(
        '[boards.two]\ntransport = "local"\nbench = {threads = 2, graph_optimization = "basic"}\n'
    )
    out = tmp_path / "m.json"
    argv = ["bench", str(mlp_model), *FAST, "--config", str(config), "--target", "two"]
    assert main([*argv, "--json", str(out)]) == 0
    assert (
        "from the bench table of two: threads=2, graph_optimization=basic (a flag given here wins)"
        in (capsys.readouterr().out)
    )
    ran = Measurement.load(out).settings
    assert (ran["threads"], ran["graph_optimization"]) == (2, "basic")
    assert main([*argv, "--threads", "1", "--json", str(out), "-q"]) == 0  # a flag wins
    ran = Measurement.load(out).settings
    assert (ran["threads"], ran["graph_optimization"]) == (1, "basic")
    assert main(["bench", str(mlp_model), *FAST, "--json", str(out), "-q"]) == 0  # local: none
    assert Measurement.load(out).settings["threads"] == 0


def test_cpus_and_governor_reach_the_settings(tmp_path: Path, mlp_model: Path) -> None:
    from hwnas_bench.cli.bench import settings_from
    from hwnas_bench.cli.main import build_parser

    args = build_parser().parse_args(
        ["bench", str(mlp_model), "--cpus", "0", "--governor", "performance"]
    )
    settings = settings_from(args)
    assert settings.cpus == [0]
    assert settings.governor == "performance"
    out = tmp_path / "m.json"
    assert main(["bench", str(mlp_model), *FAST, "--cpus", "0", "--json", str(out), "-q"]) == 0
    assert Measurement.load(out).settings["cpus"] == [0]


def test_busy_board_and_governor_are_shown_next_to_drift(tmp_path: Path, mlp_model: Path) -> None:
    import dataclasses

    from rich.console import Console

    from hwnas_bench.cli.render import measurement_notes, measurement_table

    out = tmp_path / "m.json"
    assert main(["bench", str(mlp_model), *FAST, "--json", str(out), "-q"]) == 0
    m = Measurement.load(out)
    env = dataclasses.replace(
        m.environment,
        busy="load average 3.9 on 2 CPUs: other work was running",
        load_avg_start=[3.9, 2.0, 1.0],
        cpu_count=2,
        affinity=[0, 1],
        governor_request={"requested": "performance", "applied": False, "reason": "read-only"},
    )
    m = dataclasses.replace(m, environment=env)
    console = Console(width=160, record=True)
    console.print(measurement_table(m))
    text = console.export_text()
    assert "YES: load average 3.9 on 2 CPUs" in text
    assert "0-1 of 2" in text
    assert "performance requested, not applied: read-only" in text
    assert any("other work was running" in n for n in measurement_notes(m))


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
    out = capsys.readouterr().out
    assert "Conv" in out
    assert "(3 runs)" in out  # the timed runs, warm-up excluded
    for column in ("median µs", "p95 µs", "input shapes"):
        assert column in out


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


def test_token_flag_and_env_reach_a_tcp_agent(
    tmp_path: Path,
    mlp_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent started with --tcp and --token is reached with --serial socket://... and
    --token, or HWNAS_AGENT_TOKEN; the token is never printed, even with -v."""
    import socket

    from hwnas_bench.testing.parts import wait_for_line

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "s3cret-token-value"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "device_agent", "--tcp", f"127.0.0.1:{port}"),
            *("--token", secret, "--cache-dir", str(tmp_path)),
        ],
        stderr=subprocess.PIPE,
    )
    url = f"socket://127.0.0.1:{port}"
    try:
        wait_for_line(proc, b"serving TCP", 30)
        assert main(["bench", str(mlp_model), *FAST, "--serial", url, "--token", secret]) == 0
        assert secret not in capsys.readouterr().out
        assert main(["-v", "bench", str(mlp_model), *FAST, "--serial", url, "--token", "no"]) == 2
        captured = capsys.readouterr()
        assert "unauthorized" in captured.err
        assert secret not in captured.err + captured.out
        monkeypatch.setenv("HWNAS_AGENT_TOKEN", secret)
        assert main(["agent", "ping", "--serial", url]) == 0
        assert secret not in capsys.readouterr().out
    finally:
        proc.kill()
        proc.wait()


GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


@pytest.mark.skipif(
    os.access(GOVERNOR, os.W_OK), reason="this machine lets us set the governor: no refusal"
)
def test_governor_the_board_refuses_is_a_usage_mistake(
    capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    assert main(["bench", str(mlp_model), *FAST, "--governor", "performance"]) == 2
    assert "[not_permitted]" in one_error_line(capsys)


def test_input_too_large_is_a_usage_mistake(
    capsys: pytest.CaptureFixture[str], mlp_model: Path
) -> None:
    assert main(["bench", str(mlp_model), *FAST, "--dim", "batch=200000000"]) == 2
    assert "[input_too_large]" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("code", "exit_code"),
    [
        ("bad_input", 2),
        ("bad_request", 2),
        ("provider_unavailable", 2),
        ("unauthorized", 2),
        ("input_too_large", 2),
        ("not_permitted", 2),
        ("out_of_memory", 1),
        ("disk_full", 1),
        ("internal", 1),
    ],
)
def test_agent_error_codes_map_to_exit_codes(code: str, exit_code: int) -> None:
    from hwnas_bench import AgentError
    from hwnas_bench.cli.main import exit_code_for

    assert exit_code_for(AgentError("pi5", "bench", code, "refused")) == exit_code


def test_a_model_named_like_markup_is_shown_as_named(
    mlp_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table's title is the model's file name: rich read ``[red]`` in it as markup."""
    model = tmp_path / "[red]m[bold]:smile:.onnx"
    model.write_bytes(mlp_model.read_bytes())
    assert main(["bench", str(model), *FAST]) == 0
    out = capsys.readouterr().out
    assert "[red]m[bold]:smile:.onnx on local" in out
