"""A search measuring on the SSH fixture's board (real sshd), and that board dropping out
mid-search: the trial is failed with the reason, the search reconnects and goes on."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from hwnas_bench.testing import SSHServer
from search import Searcher

from .test_search import SMALL, digits_space

pytestmark = pytest.mark.ssh


def test_a_search_measures_on_the_ssh_board(
    sshd: SSHServer, tmp_path: Path, small_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    target = sshd.target()
    searcher = Searcher(
        digits_space(),
        target=target,
        strategy="random",
        trials=4,
        epochs=1,
        batch_size=64,
        out=tmp_path,
        bench=SMALL,
    )
    best = searcher.search(*small_digits)
    assert best.measurement is not None
    assert best.measurement.target == target.name
    result = searcher.result
    assert result is not None
    assert result.board == target.name
    measured = [r for r in result.trials if r.measurement is not None]
    assert measured
    assert all(r.measurement.target == target.name for r in measured)
    assert "ssh-board" in (tmp_path / "summary.md").read_text()
    # a remote board: candidate k is measured while k+1 trains (trial k+1 starts before k ends)
    trials = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path}/study.db").trials
    assert any(
        b.datetime_start < a.datetime_complete
        for a, b in itertools.pairwise(trials)
        if a.state == optuna.trial.TrialState.COMPLETE
    )


@pytest.mark.slow
def test_a_board_dropping_out_mid_search_fails_that_trial_and_the_search_goes_on(
    sshd: SSHServer, tmp_path: Path, small_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    searcher = Searcher(
        digits_space(conv_channels=[4, 8, 16], fc_sizes=[16, 32, 64]),
        target=sshd.target(),
        strategy="random",
        trials=4,
        epochs=1,
        batch_size=64,
        seed=1,
        out=tmp_path,
        # long enough a timed loop that the cut lands inside it
        bench={"min_time_s": 2.0, "min_iterations": 10, "warmup_min_s": 0.0},
        measure_rounds=1,  # one 2 s loop, which reports its progress while it runs
    )
    cut: list[int] = []

    def drop_the_board(progress: Mapping[str, Any]) -> None:
        if progress.get("stage") == "timed" and not cut:
            cut.append(sshd.kill_sessions())  # every SSH session to the board dies now

    searcher.on_measure_progress = drop_the_board
    searcher.search(*small_digits)
    assert cut
    assert cut[0] > 0
    result = searcher.result
    assert result is not None
    failed = [r for r in result.trials if r.outcome == "failed"]
    assert len(failed) == 1, [(r.outcome, r.reason) for r in result.trials]
    reason = failed[0].reason or ""
    assert reason.startswith("measurement: ssh-board: "), reason
    assert "closed" in reason, reason
    after = [r for r in result.trials if r.number > failed[0].number and r.measurement is not None]
    assert after, "no measurement after the board came back"
    assert result.counts["failed"] == 1
    assert result.counts["generated"] == 4
    assert result.counts["measured"] == 3
