"""Train a supernet: weight steps and architecture steps, alternately, on separate splits.

Per batch of the weight split (80% of the search's training split, seeded): one step of
the network weights on the task loss (the candidates' optimizer and learning rate), then
one step of the architecture weights α on a batch of the architecture split (Adam) on
``L_task + λ·(E[lat]/T - 1)`` (+ the same for energy), or ``L_task + λ·E[lat_ms]`` with a
fixed λ. Both forward passes take a Gumbel-softmax sample of α; E[lat] is the exact
expectation under softmax(α). After each architecture step, dual ascent: ``λ <- max(0,
λ + η·(E[lat]/T - 1))``. The strategy warms the weights up first (round 0's first third of
epochs trains the weights only: α judged on untrained weights drifts to ``skip``, whose
identity path learns fastest). Seeded: the same seed gives the same α, λ and trace.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...training.data import Split
from ...training.train import TrainSettings, torch_threads
from .supernet import CostModel, Positions, gumbel_softmax

ARCH_SPLIT = 0.2  #: the share of the training split that trains α


@dataclass(frozen=True)
class DualSettings:
    """The architecture optimiser and the λ calibration."""

    arch_lr: float = 0.05  #: Adam on α
    dual_lr: float = 0.5  #: η of the dual ascent on λ
    tau_start: float = 5.0  #: Gumbel-softmax temperature, annealed over round 0 ...
    tau_end: float = 0.5  #: ... to this, and kept there in later rounds


def _optimizer(params: list[nn.Parameter], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.learning_rate, momentum=0.9)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.learning_rate)
    return torch.optim.Adam(params, lr=s.learning_rate)


class SupernetTrainer:
    """The supernet, α, λ and the optimisers' state, kept between rounds (warm start)."""

    def __init__(
        self,
        macro: Positions,
        data: Split,
        train: TrainSettings,
        *,
        seed: int,
        latency: CostModel,
        energy: CostModel | None,
        dual: DualSettings,
        fixed_lambda: float | None,
    ) -> None:
        self.macro, self.train, self.dual = macro, train, dual
        self.latency, self.energy = latency, energy
        self.fixed_lambda = fixed_lambda
        self.lam = fixed_lambda if fixed_lambda is not None else 0.0
        self.lam_energy = 0.0
        self.net = macro.supernet(seed=seed)
        self.alpha = [nn.Parameter(torch.zeros(len(p.choices))) for p in macro.positions]
        self.w_opt = _optimizer(list(self.net.parameters()), train)
        self.a_opt = torch.optim.Adam(self.alpha, lr=dual.arch_lr, betas=(0.5, 0.999))
        self.generator = torch.Generator().manual_seed(seed)
        order = np.random.default_rng(seed).permutation(len(data.x_train))
        n_arch = max(1, round(len(order) * ARCH_SPLIT))
        w, a = order[n_arch:], order[:n_arch]
        self.xw, self.yw = torch.from_numpy(data.x_train[w]), torch.from_numpy(data.y_train[w])
        self.xa, self.ya = torch.from_numpy(data.x_train[a]), torch.from_numpy(data.y_train[a])
        self.arch_steps = 0  #: architecture steps so far, all rounds
        self._arch_cursor = 0
        self._arch_order = torch.randperm(len(self.xa), generator=self.generator)
        self.seed = seed

    def probs(self) -> list[torch.Tensor]:
        return [torch.softmax(a.detach(), dim=0) for a in self.alpha]

    def log_probs(self) -> list[np.ndarray]:
        return [torch.log_softmax(a.detach(), dim=0).numpy().astype(float) for a in self.alpha]

    def expected_ms(self) -> float:
        return float(self.latency.expectation(self.probs()))

    def _arch_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.train.batch_size
        if self._arch_cursor >= len(self.xa):
            self._arch_order = torch.randperm(len(self.xa), generator=self.generator)
            self._arch_cursor = 0
        idx = self._arch_order[self._arch_cursor : self._arch_cursor + size]
        self._arch_cursor += size
        return self.xa[idx], self.ya[idx]

    def _sample(self, tau: float, *, grad: bool) -> list[torch.Tensor]:
        return [gumbel_softmax(a if grad else a.detach(), tau, self.generator) for a in self.alpha]

    def run(
        self,
        epochs: int,
        *,
        round_index: int,
        anneal: bool,
        warmup_epochs: int,
        latency_aim_ms: float | None,
        energy_aim_mj: float | None,
        ratio: float,
        on_step: Callable[[dict[str, Any]], None],
    ) -> None:
        """Train ``epochs`` more epochs; ``on_step`` gets a trace row per architecture step.

        ``latency_aim_ms`` is in table units (the corrected aim / ``ratio``); None with a
        fixed λ. ``anneal``: the temperature goes tau_start -> tau_end over this run's
        architecture steps; otherwise it stays at tau_end.
        """
        size = self.train.batch_size
        per_epoch = (len(self.xw) + size - 1) // size
        total = max(1, (epochs - warmup_epochs) * per_epoch)
        d = self.dual
        done = 0
        with torch_threads(self.train.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + round_index)
            for epoch in range(epochs):
                order = torch.randperm(len(self.xw), generator=self.generator)
                for start in range(0, len(self.xw), size):
                    progress = done / max(1, total - 1)
                    tau = (
                        d.tau_start * (d.tau_end / d.tau_start) ** progress if anneal else d.tau_end
                    )
                    idx = order[start : start + size]
                    self._weight_step(self.xw[idx], self.yw[idx], tau)
                    if epoch < warmup_epochs:
                        continue
                    row = self._arch_step(tau, latency_aim_ms, energy_aim_mj)
                    aim = latency_aim_ms * ratio if latency_aim_ms is not None else None
                    on_step(
                        {
                            "round": round_index,
                            "epoch": epoch,
                            "step": self.arch_steps,
                            **row,
                            "expected_ms": row["expected_table_ms"] * ratio,
                            "latency_aim_ms": aim,
                            "temperature": round(tau, 5),
                        }
                    )
                    self.arch_steps += 1
                    done += 1

    def _weight_step(self, x: torch.Tensor, y: torch.Tensor, tau: float) -> None:
        self.net.train()
        self.w_opt.zero_grad()
        loss = nn.functional.cross_entropy(self.net(x, self._sample(tau, grad=False)), y)
        loss.backward()  # type: ignore[no-untyped-call]
        self.w_opt.step()

    def _arch_step(
        self, tau: float, latency_aim_ms: float | None, energy_aim_mj: float | None
    ) -> dict[str, Any]:
        x, y = self._arch_batch()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.a_opt.zero_grad()
        task = nn.functional.cross_entropy(self.net(x, self._sample(tau, grad=True)), y)
        probs = [torch.softmax(a, dim=0) for a in self.alpha]
        expected = self.latency.expectation(probs)
        loss = task
        if latency_aim_ms is None:  # fixed λ: the seed's weighted sum, in ms
            loss = loss + self.lam * expected
        else:
            loss = loss + self.lam * (expected / latency_aim_ms - 1.0)
        expected_energy = None
        if self.energy is not None:
            expected_energy = self.energy.expectation(probs)
            if energy_aim_mj is not None:
                loss = loss + self.lam_energy * (expected_energy / energy_aim_mj - 1.0)
        loss.backward()  # type: ignore[no-untyped-call]
        self.a_opt.step()
        for p in self.net.parameters():
            p.requires_grad_(True)
        lam_used, value = self.lam, float(expected.detach())
        if latency_aim_ms is not None and self.fixed_lambda is None:
            self.lam = max(0.0, self.lam + self.dual.dual_lr * (value / latency_aim_ms - 1))
        row: dict[str, Any] = {
            "lambda": round(lam_used, 6),
            "expected_table_ms": round(value, 6),
            "task_loss": round(float(task.detach()), 5),
        }
        if expected_energy is not None:
            joules = float(expected_energy.detach())
            row["expected_energy_mj"] = round(joules, 6)
            row["lambda_energy"] = round(self.lam_energy, 6)
            if energy_aim_mj is not None:
                violation = joules / energy_aim_mj - 1
                self.lam_energy = max(0.0, self.lam_energy + self.dual.dual_lr * violation)
        return row
