"""Model cards and ``hwnas deploy`` on the SSH fixture's board (a real sshd; the "board" is
this machine, so what landed there is checked on the file system) and the real local agent.

Short real searches on the SSH board make the run; each test works on its own copy of it,
and a test that tampers with the card or the model does so on that copy."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwnas_bench import Config, Measurement, TargetSpec
from hwnas_bench.measurement import ModelInfo
from hwnas_bench.testing import SSHServer
from search import Searcher
from search.deploy import (
    MAX_TOLERANCE,
    MIN_TOLERANCE,
    _remote_dir,
    deploy_model,
    spread_ms,
    verdict,
)
from search.errors import SettingsError
from search.measure.confidence import judge
from search.model_card import (
    ModelCardError,
    read_target_folder,
    safe_name,
    write_target_folder,
)

from .test_search import SMALL, digits_space

pytestmark = pytest.mark.ssh

BOARD = "ssh-board"
#: the search's measurement: 3 rounds of 0.1 s (deploy repeats them): steadier than SMALL's
QUIET = {**SMALL, "min_time_s": 0.3}


@pytest.fixture(scope="module")
def made_run(
    sshd: SSHServer,
    small_digits: tuple[np.ndarray, np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A real search measured on the SSH board, its target folder as the search wrote it:
    the tests deploy the search's own card, never one written for them.

    One trial, so nothing trains while the search measures it (on a remote board candidate
    k is measured while k+1 trains, and the fixture's board is this machine). One agent
    start now and then lands in a spell 0.7x as fast as the rest, and a card records one
    start: three searches are made, and the run whose card's figure is the median of the
    three is the one deployed, as a board's usual figure."""
    made: list[tuple[float, Path]] = []
    with pytest.MonkeyPatch.context() as mp:  # the tests' own lock dir, for these searches
        mp.setenv("HWNAS_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
        for _ in range(3):
            out = tmp_path_factory.mktemp("run")
            searcher = Searcher(
                # three wide convolutions: a ~0.05 ms model (a 10 us one swings by 2x
                # between agent starts here: docs/compress.md)
                digits_space(
                    num_layers=(3, 3), layer_types=["conv"], conv_channels=[32], conv_strides=[1]
                ),
                target=sshd.target(BOARD),
                strategy="random",
                trials=1,
                epochs=1,
                batch_size=64,
                out=out,
                bench=QUIET,
                progress=False,
            )
            searcher.search(*small_digits)
            made.append((read_target_folder(out, BOARD)[1].latency_ms, out))
    return sorted(made)[1][1]


@pytest.fixture
def run(made_run: Path, tmp_path: Path) -> Path:
    """This test's copy of the run (a test may tamper with it)."""
    return Path(shutil.copytree(made_run, tmp_path / "run"))


@pytest.fixture
def config(sshd: SSHServer) -> Config:
    return Config(boards={BOARD: sshd.target(BOARD)})


def _edit_card(run: Path, edit: Any) -> None:
    path = run / "targets" / BOARD / "model_card.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the model card ----------------------------------------------------------------------


def test_the_target_folder_holds_the_model_and_a_card_that_describes_it(run: Path) -> None:
    model, card = read_target_folder(run, BOARD)
    assert model == run / "targets" / BOARD / "model.onnx"
    raw = json.loads((model.parent / "model_card.json").read_text())
    assert raw["schema"] == "hwnas.model_card/1"
    assert card.model_sha256 == _sha(model)
    assert card.model_bytes == model.stat().st_size
    assert card.candidate.startswith("in8x8x1-")
    assert card.candidate.endswith("-out10")
    assert len(card.candidate_hash) == 12
    assert card.architecture[-1].endswith("-> 10 logits")
    assert len(card.architecture) == card.candidate.count("-")  # layers + the classifier
    assert card.input["shape"] == [1, 1, 8, 8]
    assert card.input["layout"] == "NCHW"
    assert card.input["dtype"] == "float32"
    assert card.input["name"] == "input"
    assert "transpose" in card.input["note"]
    assert card.output["classes"] == 10
    assert 0.0 < (card.accuracy["validation"] or 0) <= 1.0
    assert card.accuracy["test"] is None  # the search had no test set
    assert card.compression is None
    assert card.latency_stat == "p50"
    m = card.measured()
    assert card.latency_ms == m.latency.median_ms > 0
    assert m.target == BOARD
    assert m.model.sha256 == card.model_sha256
    assert card.energy_mj is None
    assert m.power.energy_mj is None
    assert m.power.reason
    assert set(card.board_facts) == {
        "hostname",
        "arch",
        "cpu_model",
        "cores",
        "onnxruntime",
        "device_model",
    }
    assert card.board_facts["onnxruntime"]
    # the hello says cores_physical / cores_logical; the card's cores is filled from them
    assert isinstance(card.board_facts["cores"], int)
    assert 1 <= card.board_facts["cores"] <= (os.cpu_count() or 1)
    assert card.board == BOARD
    created = datetime.datetime.fromisoformat(card.created)
    assert created.utcoffset() == datetime.timedelta(0)
    assert card.hwnas_bench_version


def test_a_card_records_the_compression_applied(run: Path) -> None:
    _, card = read_target_folder(run, BOARD)
    record, settings = best_record(run)
    chosen = {"name": "int8", "kind": "int8 static", "accuracy": 0.9}
    int8 = b"int8 bytes"
    fp32_measurement = card.measured()
    with pytest.raises(SettingsError, match="not of the model to ship"):  # fp32's figures
        write_target_folder(
            run, "tag:edge", model=int8, record=record, settings=settings, board_name=BOARD,
            facts={}, compression=chosen,
        )  # fmt: skip
    sha = hashlib.sha256(int8).hexdigest()
    own = replace(fp32_measurement, model=ModelInfo(sha, len(int8)))  # as if int8's own
    folder = write_target_folder(
        run, "tag:edge", model=int8, record=record, settings=settings, board_name=BOARD,
        facts={}, compression=chosen, measurement=own,
    )  # fmt: skip
    assert folder.name == safe_name("tag:edge") == "tag_edge"
    _, other = read_target_folder(run, "tag:edge")
    assert other.compression == chosen
    assert other.model_sha256 == sha
    assert other.measurement["model"]["sha256"] == sha
    assert other.candidate == card.candidate


def best_record(run: Path) -> tuple[Any, Any]:
    """The best trial's record and the settings, rebuilt from the run's files."""
    from search.records import TrialRecord
    from search.settings import SearchSettings

    _, card = read_target_folder(run, BOARD)
    record = TrialRecord(
        number=0, candidate=card.candidate, hash=card.candidate_hash, outcome="measured",
        accuracy=card.accuracy["validation"], measurement=card.measured(),
    )  # fmt: skip
    return record, SearchSettings()


def test_a_tampered_model_is_refused(run: Path, config: Config) -> None:
    model = run / "targets" / BOARD / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    model.write_bytes(bytes(data))
    with pytest.raises(ModelCardError, match=r"not the model its card describes.*refusing"):
        deploy_model(run, BOARD, config=config)


def test_an_unknown_target_lists_the_runs_targets(run: Path) -> None:
    with pytest.raises(
        ModelCardError, match=r"no model for target 'jetson' \(targets: ssh-board\)"
    ):
        read_target_folder(run, "jetson")


def test_a_corrupt_card_and_a_directory_that_is_no_run_are_named(run: Path, tmp_path: Path) -> None:
    (run / "targets" / BOARD / "model_card.json").write_text("{not json")
    with pytest.raises(ModelCardError, match=r"model_card\.json is not a readable model card"):
        read_target_folder(run, BOARD)
    with pytest.raises(ModelCardError, match="is not a search run"):
        read_target_folder(tmp_path, BOARD)


# --- deploy ------------------------------------------------------------------------------


def test_the_default_place_on_an_ssh_board_is_under_the_login_home(run: Path) -> None:
    _, card = read_target_folder(run, BOARD)
    assert _remote_dir(None, card) == f"hwnas-models/{card.candidate_hash}"  # SFTP: home
    assert _remote_dir("~/models", card) == "models"
    assert _remote_dir("/opt/models", card) == "/opt/models"


def test_deploy_puts_the_ssh_boards_model_on_that_board_and_remeasures_it(
    run: Path, config: Config, tmp_path: Path
) -> None:
    where = tmp_path / "on-board"  # the board is this machine: its disk is ours to check
    # The card is the usual figure of three agent starts (made_run); so is the fresh one:
    # one start on this shared machine can land in a spell 0.7x or 1.3x as fast as the rest.
    # The last deploy's files and record are checked, the median deploy's verdict.
    deploys = [deploy_model(run, BOARD, path=str(where), config=config) for _ in range(3)]
    result, usual = deploys[-1], sorted(deploys, key=lambda d: d.fresh_ms)[1]
    _, card = read_target_folder(run, BOARD)
    assert result.transport == "ssh"
    assert result.board == BOARD
    assert result.model_path == str(where / "model.onnx")
    assert _sha(where / "model.onnx") == card.model_sha256
    assert (where / "model_card.json").read_bytes() == (
        run / "targets" / BOARD / "model_card.json"
    ).read_bytes()
    assert not list(where.glob("*.part"))
    assert result.fresh.model.sha256 == card.model_sha256
    assert result.fresh.target == BOARD
    assert result.fresh.settings["min_time_s"] == card.measurement["settings"]["min_time_s"]
    assert card.measurement["settings"]["min_time_s"] == pytest.approx(0.1)
    record = json.loads((run / "targets" / BOARD / "deploy.json").read_text())
    assert record["fresh_ms"] == result.fresh_ms == result.fresh.latency.median_ms
    assert record["card_ms"] == card.latency_ms
    assert Measurement.from_dict(record["measurement"]).latency == result.fresh.latency
    assert record["ok"] is result.ok
    # same board, minutes apart: within the spread
    assert usual.ok, [d.figures() for d in deploys]


def test_a_card_claiming_five_times_lower_latency_fails_with_the_figures(
    run: Path, config: Config, tmp_path: Path
) -> None:
    def faster(data: dict[str, Any]) -> None:
        data["latency_ms"] /= 5
        lat = data["measurement"]["latency"]
        for key in ("mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "min_ms", "max_ms"):
            lat[key] /= 5

    _edit_card(run, faster)
    _, card = read_target_folder(run, BOARD)  # the model is untouched: the card is accepted
    result = deploy_model(run, BOARD, path=str(tmp_path / "m"), config=config)
    assert not result.ok
    assert result.reason.startswith("differs from the card: p50 ")
    assert f"{result.fresh_ms:.4g} ms" in result.figures()
    assert f"{card.latency_ms:.4g} ms" in result.figures()
    assert result.fresh_ms > 2 * card.latency_ms
    assert json.loads((run / "targets" / BOARD / "deploy.json").read_text())["ok"] is False


def test_the_verdict_passes_within_the_spread_and_fails_beyond_it_or_over_budget(
    run: Path,
) -> None:
    _, card = read_target_folder(run, BOARD)
    real = card.measured()
    card_ms = 1.0
    card_m = replace(real, latency=replace(real.latency, median_ms=1.0, p95_ms=1.3))  # spread .3
    card = replace(card, latency_ms=card_ms, measurement=card_m.to_dict(), budgets={})

    def fresh(median: float, p95: float) -> Measurement:
        return replace(real, latency=replace(real.latency, median_ms=median, p95_ms=p95))

    assert spread_ms(card_m) == pytest.approx(0.3)
    # the card's spread (0.3 ms) is the larger: 1.29 passes, 1.31 fails
    assert verdict(card, fresh(1.29, 1.35))[2] == ""
    fresh_ms, allowed, why = verdict(card, fresh(1.31, 1.35))
    assert fresh_ms == 1.31
    assert allowed == pytest.approx(0.3)
    assert why.startswith("differs from the card")
    # the fresh spread counts as well (0.5 ms here)
    assert verdict(card, fresh(1.45, 1.95))[2] == ""
    # no spread at all: 10 % of the card's figure still is "the same"
    flat = replace(real, latency=replace(real.latency, median_ms=1.0, p95_ms=1.0))
    flat_card = replace(card, measurement=flat.to_dict())
    assert verdict(flat_card, fresh(1.0 + 0.9 * MIN_TOLERANCE, 1.0))[2] == ""
    assert verdict(flat_card, fresh(1.0 + 1.1 * MIN_TOLERANCE, 1.0))[2] != ""
    # a long tail on the fresh run (p95 2.4x its p50, as a busy 2-core host showed) allows
    # no more than half the card's figure: a card claiming a fifth of the latency fails
    fast_card = replace(
        card,
        latency_ms=0.2,
        measurement=replace(
            real, latency=replace(real.latency, median_ms=0.2, p95_ms=0.21)
        ).to_dict(),
    )
    fresh_ms, allowed, why = verdict(fast_card, fresh(1.0, 2.4))
    assert allowed == pytest.approx(MAX_TOLERANCE * 0.2)
    assert why.startswith("differs from the card")
    assert verdict(card, fresh(1.0 + 0.9 * MAX_TOLERANCE, 3.0))[2] == ""
    assert verdict(card, fresh(1.0 + 1.1 * MAX_TOLERANCE, 3.0))[2] != ""
    # over the budget fails even when it matches the card
    tight = replace(card, budgets={"latency_ms": 1.1})
    assert verdict(tight, fresh(1.2, 1.3))[2] == "over budget: p50 1.2 ms > 1.1 ms"
    frugal = replace(card, budgets={"energy_mj": 2.0})
    watts = replace(fresh(1.0, 1.1), power=replace(real.power, energy_mj=2.5))
    assert verdict(frugal, watts)[2] == "over budget: energy 2.5 mJ > 2 mJ"
    # no energy figure (no meter): not measured, never within; passed only when allowed
    assert verdict(frugal, fresh(1.0, 1.1))[2].startswith("energy not measured: ")
    assert verdict(frugal, fresh(1.0, 1.1), allow_unmeasured_energy=True)[2] == ""
    # a figure that is not a number is never "the same" nor "within budget"
    assert verdict(card, fresh(math.nan, 1.3))[2].startswith("differs from the card")
    assert verdict(tight, fresh(math.nan, 1.3))[2] == "p50 latency not measured"
    # the search's rule: rounds that straddle the budget up to the cap fail as undecided;
    # rounds proven within pass though the median round alone sits near the budget
    straddling = judge([1.05, 1.12, 1.09] * 4, 1.1, "p50")
    why = verdict(tight, fresh(1.09, 1.2), latency_verdict=straddling)[2]
    assert why.startswith("undecided: the 95% interval of p50 over 12 rounds")
    proven = judge([1.08, 1.081, 1.079] * 4, 1.1, "p50")
    assert verdict(tight, fresh(1.08, 1.2), latency_verdict=proven)[2] == ""


def test_deploy_to_the_local_agent_puts_the_model_in_its_cache(run: Path, tmp_path: Path) -> None:
    record, settings = best_record(run)
    model = (run / "targets" / BOARD / "model.onnx").read_bytes()
    write_target_folder(
        run, "local", model=model, record=record, settings=settings, board_name="local",
        facts={},
    )  # fmt: skip
    cache = tmp_path / "agent-cache"  # the agent's own: not the cache other agents share
    local = Config(boards={"local": TargetSpec("local", "local", {"cache_dir": str(cache)})})
    result = deploy_model(run, "local", config=local)
    assert result.transport == "local"
    assert result.card_path is None
    landed = Path(result.model_path)
    assert landed.parent == cache
    assert landed.name == f"{_sha(run / 'targets' / 'local' / 'model.onnx')}.onnx"
    assert _sha(landed) == hashlib.sha256(model).hexdigest()
    assert any("cannot store an arbitrary file" in n for n in result.notes)
    assert (run / "targets" / "local" / "deploy.json").is_file()
    with pytest.raises(ModelCardError, match="--path is for SSH boards"):
        deploy_model(run, "local", path=str(tmp_path), config=local)


# --- hwnas deploy ------------------------------------------------------------------------


@pytest.fixture
def hwnas() -> Any:
    """``hwnas`` in-process (the deploy verb comes through its entry point)."""
    from hwnas_bench.cli.main import main

    return main


def _toml(sshd: SSHServer, tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "hwnas.toml"
    path.write_text(sshd.board_toml(BOARD, **overrides))
    return path


def test_hwnas_deploy_ships_and_proves_the_model(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any
) -> None:
    where = tmp_path / "models"
    argv = ["deploy", str(run), "--target", BOARD, "--path", str(where)]
    argv += ["--config", str(_toml(sshd, tmp_path))]
    failed: list[str] = []  # one agent start can land in a spell (see above): three tries
    while hwnas(argv) != 0:
        err = capsys.readouterr().err
        assert err.startswith(f"hwnas: deploy FAILED on {BOARD}: differs from the card"), err
        failed.append(err)
        assert len(failed) < 3, failed
    out = capsys.readouterr().out
    assert f"model at {where / 'model.onnx'}" in out
    assert f"model card at {where / 'model_card.json'}" in out
    assert "proven on the board: p50 fresh " in out
    assert " vs card " in out
    assert (where / "model.onnx").is_file()


def test_hwnas_deploy_exit_codes(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any
) -> None:
    config = ["--config", str(_toml(sshd, tmp_path))]
    assert hwnas(["deploy", str(tmp_path / "nothing"), "--target", BOARD, *config]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert hwnas(["deploy", str(run), "--target", "jetson", *config]) == 2
    assert "(targets: ssh-board)" in capsys.readouterr().err
    model = run / "targets" / BOARD / "model.onnx"
    good = model.read_bytes()
    model.write_bytes(good + b"\0")
    assert hwnas(["deploy", str(run), "--target", BOARD, *config]) == 2
    assert "is not the model its card describes" in capsys.readouterr().err
    model.write_bytes(good)
    _edit_card(run, lambda d: d.update(latency_ms=d["latency_ms"] / 5))
    assert (
        hwnas(["deploy", str(run), "--target", BOARD, "--path", str(tmp_path / "m"), *config]) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith(f"hwnas: deploy FAILED on {BOARD}: differs from the card: p50 ")
    assert " vs card " in err
    # a board that does not answer: a board failure, exit 1, one line
    args = argparse.Namespace(
        run_dir=run,
        target=BOARD,
        path=None,
        config=_dead_toml(tmp_path),
        lease_timeout=5.0,
        allow_unmeasured_energy=False,
    )
    from search.cli.deploy import run as deploy_verb

    assert deploy_verb(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("hwnas: error: ")
    assert "connection refused" in err
    assert len(err.strip().splitlines()) == 1


def test_hwnas_deploy_fails_an_unmeasured_energy_budget_unless_allowed(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any
) -> None:
    """The board has no power meter: a card with an energy budget cannot be proven within
    it (exit 1, the reason and the flag named); --allow-unmeasured-energy deploys it with a
    note, and deploy.json says so."""
    _edit_card(run, lambda d: d.update(budgets={**d["budgets"], "energy_mj": 1000.0}))
    argv = ["deploy", str(run), "--target", BOARD, "--path", str(tmp_path / "m")]
    argv += ["--config", str(_toml(sshd, tmp_path))]
    assert hwnas(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hwnas: deploy FAILED on {BOARD}: energy not measured: "), err
    assert "--allow-unmeasured-energy" in err
    failed: list[str] = []  # one agent start can land in a spell (see above): three tries
    while hwnas([*argv, "--allow-unmeasured-energy"]) != 0:
        err = capsys.readouterr().err
        assert err.startswith(f"hwnas: deploy FAILED on {BOARD}: differs from the card"), err
        failed.append(err)
        assert len(failed) < 3, failed
    out = capsys.readouterr().out
    assert "note: energy budget not checked (allowed): energy not measured: " in out
    record = json.loads((run / "targets" / BOARD / "deploy.json").read_text())
    assert record["ok"] is True
    assert any(n.startswith("energy budget not checked (allowed)") for n in record["notes"])


def _dead_toml(tmp_path: Path) -> Path:
    """A config whose ssh-board is a port nothing listens on."""
    path = tmp_path / "dead.toml"
    path.write_text(f'[boards.{BOARD}]\ntransport = "ssh"\nhost = "127.0.0.1"\nport = 1\n')
    return path


# --- the card is not trusted ---------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _deploy(hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any) -> list[str]:
    """``hwnas deploy`` of the run into tmp_path/shipped; asserts exit 2 with one line and
    that nothing was shipped; returns the line."""
    where = tmp_path / "shipped"
    argv = ["deploy", str(run), "--target", BOARD, "--path", str(where)]
    assert hwnas([*argv, "--config", str(_toml(sshd, tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("hwnas: error: ")
    assert not where.exists()
    return err[0]


BAD_CARDS: list[tuple[str, Any, str]] = [
    ("nan-latency", lambda d: d.update(latency_ms=math.nan), "latency_ms must be a finite "
     "number > 0, not nan"),
    ("inf-latency", lambda d: d.update(latency_ms=math.inf), "latency_ms must be a finite"),
    ("string-latency", lambda d: d.update(latency_ms="fast"), "latency_ms must be a finite"),
    ("bool-latency", lambda d: d.update(latency_ms=True), "latency_ms must be a finite"),
    ("nan-budget", lambda d: d.update(budgets={"latency_ms": math.nan}),
     r"budgets\.latency_ms must be a finite number > 0"),
    ("negative-energy", lambda d: d.update(energy_mj=-1.0), "energy_mj must be a finite "
     "number >= 0"),
    ("nan-measured-p95", lambda d: d["measurement"]["latency"].update(p95_ms=math.nan),
     r"measurement\.latency\.p95_ms must be a finite"),
    ("negative-threads", lambda d: d["measurement"]["settings"].update(threads=-1),
     r"measurement\.settings: threads must be an integer >= 0"),
    ("string-threads", lambda d: d["measurement"]["settings"].update(threads="4"),
     r"measurement\.settings: threads must be an integer >= 0"),
    ("list-budgets", lambda d: d.update(budgets=[1]), "budgets must be an object, not list"),
    ("string-size", lambda d: d.update(model_bytes="50k"), "model_bytes must be an integer"),
    ("percent-accuracy", lambda d: d["accuracy"].update(validation=97.5),
     r"accuracy\.validation must be null or a fraction in \[0, 1\]"),
    ("unknown-stat", lambda d: d.update(latency_stat="p42"), "latency_stat must be one of"),
    ("list-architecture", lambda d: d.update(architecture="conv"), "architecture must be a list"),
    ("no-latency-section", lambda d: d["measurement"].pop("latency"),
     "measurement is not a measurement: measurement lacks the key 'latency'"),
    ("other-models-measurement", lambda d: d["measurement"]["model"].update(sha256="0" * 64),
     "its measurement is of model 000000000000, not of its model"),
    ("short-sha", lambda d: d.update(model_sha256="abc"), "model_sha256 must be 64 hex digits"),
    ("deep", lambda d: d.update(input=_nested(40)), "nested deeper than 32 levels"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"), [c[1:] for c in BAD_CARDS], ids=[c[0] for c in BAD_CARDS]
)
def test_every_field_of_the_card_is_checked_one_line_exit_2(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any, edit: Any, message: str
) -> None:
    _edit_card(run, edit)
    line = _deploy(hwnas, run, sshd, tmp_path, capsys)
    assert "model_card.json: model card: " in line
    assert re.search(message, line), line


def test_a_candidate_hash_that_climbs_out_of_the_models_folder_is_refused(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any
) -> None:
    """The default place is ~/hwnas-models/<candidate hash>: a hash of ``..`` parts would
    write elsewhere on the board (here: this machine's home)."""
    escaped = f"hwnas-escaped-{os.getpid()}"
    _edit_card(run, lambda d: d.update(candidate_hash=f"../{escaped}"))
    argv = ["deploy", str(run), "--target", BOARD, "--config", str(_toml(sshd, tmp_path))]
    try:
        assert hwnas(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"hwnas: error: {run / 'targets' / BOARD / 'model_card.json'}: model card: "
            f"candidate_hash must be 12 hex digits, not '../{escaped}'"
        ]
        assert not (Path.home() / escaped).exists()
    finally:
        shutil.rmtree(Path.home() / escaped, ignore_errors=True)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, "[]", '"a card"', b"\xff\xfe{}"],
    ids=["very-deep", "a-list", "a-string", "not-utf8"],
)
def test_a_card_that_is_no_json_object_is_refused(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any, text: str | bytes
) -> None:
    card = run / "targets" / BOARD / "model_card.json"
    card.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = _deploy(hwnas, run, sshd, tmp_path, capsys)
    assert f"{card}" in line
    assert re.search(r"is not a readable model card|a model card is a JSON object", line), line


def test_a_fifo_for_a_model_is_refused_without_waiting_on_it(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any
) -> None:
    model = run / "targets" / BOARD / "model.onnx"
    model.unlink()
    os.mkfifo(model)
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(
            hwnas(["deploy", str(run), "-t", BOARD, "--config", str(_toml(sshd, tmp_path))])
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # blocked opening the FIFO: a writer lets it go, then fail
        with open(model, "wb"):
            pass
        worker.join(timeout=60)
        pytest.fail("deploy waited on the FIFO")
    assert codes == [2]
    assert capsys.readouterr().err.strip() == (
        f"hwnas: error: {model} is not a regular file: refusing it"
    )


def test_a_link_to_dev_zero_and_a_model_larger_than_its_card_are_refused_unread(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any
) -> None:
    """Both checked on the open file's type and size before a byte is read: /dev/zero
    never ends, and a 4 GiB file (sparse here) would be read whole to be hashed."""
    model = run / "targets" / BOARD / "model.onnx"
    _, card = read_target_folder(run, BOARD)
    model.unlink()
    model.symlink_to("/dev/zero")
    assert _deploy(hwnas, run, sshd, tmp_path, capsys) == (
        f"hwnas: error: {model} is not a regular file: refusing it"
    )
    model.unlink()
    with open(model, "wb") as f:
        f.truncate(4 * 1024**3)
    assert _deploy(hwnas, run, sshd, tmp_path, capsys) == (
        f"hwnas: error: {model} is not the model its card describes ({4 * 1024**3} bytes, "
        f"card {card.model_bytes}): it was changed after the run; refusing it"
    )


def test_a_missing_model_or_config_exits_2(
    hwnas: Any, run: Path, sshd: SSHServer, tmp_path: Path, capsys: Any
) -> None:
    model = run / "targets" / BOARD / "model.onnx"
    model.unlink()
    assert _deploy(hwnas, run, sshd, tmp_path, capsys) == (
        f"hwnas: error: {model}: No such file or directory"
    )
    argv = ["deploy", str(run), "-t", BOARD, "--config", str(tmp_path / "missing.toml")]
    assert hwnas(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "missing.toml" in err[0]
