"""A study that several search workers (processes, hosts) share through one database.

Each worker runs trials of the same Optuna study and measures on the board it leases. What
makes their numbers comparable is recorded in the study when it is created (the user
attribute :data:`RECORD_KEY`); a worker whose record differs is refused, naming each
difference. Trials of live workers stay RUNNING while their heartbeat goes on; a trial
whose heartbeat stops (its worker was killed) is failed with a reason by whichever worker
notices first, and its candidate is queued again for any worker to take up.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hwnas_bench import Measurement
from hwnas_bench.lock_url import redact, url_password, userinfo_problem

from .. import records
from ..errors import SearchError, SettingsError
from ..predict import store
from ..records import MeasurementLog, TrialRecord
from .run_dir import differences

#: the study's user attribute with what makes its numbers comparable
RECORD_KEY = "hwnas.comparable"
#: seconds between a running trial's heartbeats (an integer >= 1, as Optuna wants)
HEARTBEAT_ENV = "HWNAS_STUDY_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10
#: a trial is stale (its worker gone) after this many heartbeat intervals without one
GRACE_INTERVALS = 3
#: how long a worker joining a study waits for its creator to write the record
RECORD_WAIT_S = 30.0
#: a trial told FAIL because the study had its trials when this worker asked for it
SURPLUS = "surplus"
#: board facts (from hello) that define its speed, as the latency table's fingerprint
#: takes them, except the hostname: two boards of one kind may share a study
SPEED_FACTS = tuple(f for f in store.SPEED_FACTS if f != "hostname")
SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "sqlite")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Without Optuna's warnings about what this module does on purpose: heartbeats (an
    experimental argument) with ask/tell (Optuna expects optimize(); this module beats)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def shown(url: str) -> str:
    """``url`` as messages show it: never with its password."""
    return redact(url, url_password(url))


def check_storage_url(url: str, source: str = "--storage") -> str:
    """``url`` stripped, if it is a PostgreSQL or SQLite URL; else SettingsError (exit 2)."""
    value = url.strip()
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise SettingsError(
            f"{source}: must be a postgresql://user@host:5432/database (or sqlite:///file.db) "
            f"URL, got '{shown(value)[:200]}'"
        )
    if scheme.lower() != "sqlite":
        # the driver would end the password elsewhere than at the last '@' and quote the rest
        problem = userinfo_problem(value)
        if problem:
            raise SettingsError(f"{source}: {problem}: '{shown(value)[:200]}'")
    return value


def sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy: ``postgresql://`` and ``postgres://`` go through psycopg 3."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def heartbeat_interval() -> int:
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEARTBEAT_S
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{HEARTBEAT_ENV} must be a whole number of seconds >= 1, got {raw!r}")
    return int(raw)


def open_storage(url: str) -> RDBStorage:
    """The study's storage, with heartbeats. Two workers starting at once may race to create
    Optuna's tables in an empty database: the loser tries again."""
    interval = heartbeat_interval()
    engine: dict[str, Any] = {"pool_pre_ping": True}
    for attempt in range(4):
        try:
            with quiet():
                return RDBStorage(
                    sqlalchemy_url(url),
                    engine_kwargs=engine,
                    heartbeat_interval=interval,
                    grace_period=GRACE_INTERVALS * interval,
                )
        except Exception as exc:  # sqlalchemy's errors: connection refused, a table race
            if attempt == 3 or "connect" in str(exc).lower():
                text = str(exc).strip()
                first = redact(
                    text.splitlines()[0] if text else type(exc).__name__, url_password(url)
                )
                raise SearchError(
                    f"cannot open the study's storage {shown(url)}: {first}"
                ) from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def worker_id() -> str:
    """``host:pid`` of this worker, kept on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def speed_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    return {k: facts.get(k) for k in SPEED_FACTS}


def create_or_load(
    storage: RDBStorage,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    directions: list[optuna.study.StudyDirection],
    record: dict[str, Any],
    *,
    metric_names: list[str] | None = None,
) -> optuna.Study:
    """The shared study ``name``, created with ``record`` if new; a study created by another
    worker is joined only if its record is ``record``: else SettingsError naming each key
    that differs (``bench.threads: the study has 1, this worker 2``). ``metric_names``:
    the objectives' names (default ``accuracy``, ``latency_ms``), set on a new study so
    optuna-dashboard shows them."""
    sampler.reseed_rng()  # workers with one seed would all propose the same candidates
    try:
        study = optuna.create_study(
            storage=storage, sampler=sampler, study_name=name, directions=directions
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    else:
        study.set_user_attr(RECORD_KEY, record)
        with quiet():
            study.set_metric_names(metric_names or ["accuracy", "latency_ms"])
        return study
    if len(study.directions) != len(directions):
        raise SettingsError(f"study {name} exists and is not a search study (its objectives)")
    deadline = time.monotonic() + RECORD_WAIT_S
    while (theirs := study.user_attrs.get(RECORD_KEY)) is None:  # its creator writes it next
        if time.monotonic() > deadline:
            raise SettingsError(
                f"study {name} exists but holds no {RECORD_KEY} record (not made by hwnas "
                "search, or its creator died at once): choose another --study name"
            )
        time.sleep(0.5)
    # the record went through JSON: compare with this worker's, also through JSON
    mine = json.loads(json.dumps(record))
    differ = differences(theirs, mine)
    if differ:
        shown_diffs = "; ".join(
            f"{k}: the study has {a!r}, this worker {b!r}" for k, a, b in differ
        )
        raise SettingsError(
            f"this worker's settings differ from study {name}'s, so its measurements would not "
            f"be comparable: {shown_diffs}"
        )
    return study


class Heartbeat:
    """One thread that records a heartbeat for each running trial of this worker."""

    def __init__(self, storage: RDBStorage) -> None:
        self.storage = storage
        self.interval = storage.get_heartbeat_interval() or DEFAULT_HEARTBEAT_S
        self._ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hwnas-heartbeat", daemon=True)
        self._thread.start()

    @property
    def ids(self) -> set[int]:
        """The trial ids this worker runs now."""
        with self._lock:
            return set(self._ids)

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self._ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._ids.discard(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self._ids)
            for trial_id in ids:
                with contextlib.suppress(Exception):  # a database hiccup: the next beat retries
                    self.storage.record_heartbeat(trial_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def fail_stale(study: optuna.Study, storage: RDBStorage) -> list[int]:
    """Fail the trials of ``study`` (in ``storage``) whose worker stopped beating (killed,
    its host gone), each with a reason, and queue each one's candidate again; the trial
    numbers failed here."""
    failed = []
    # Optuna's fail_stale_trials cannot add a reason (attributes of a finished trial are
    # frozen): the reason goes on first, then the state; the worker that wins the state
    # change queues the retry.
    grace_s = storage.grace_period or 2 * (storage.heartbeat_interval or 1)
    stale = set(storage._get_stale_trial_ids(study._study_id))
    # a worker killed between Optuna's ask and its first heartbeat left a RUNNING trial
    # with no heartbeat (Optuna never calls it stale) and no worker attribute: stale too,
    # once it is older than a few grace periods
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start
        too_old = started is not None and (now - started).total_seconds() > 3 * grace_s
        if "worker" not in t.user_attrs and too_old:
            stale.add(t._trial_id)
    for trial_id in sorted(stale):
        try:
            trial = storage.get_trial(trial_id)
            worker = trial.user_attrs.get("worker", "a worker")
            storage.set_trial_user_attr(trial_id, "outcome", records.INTERRUPTED)
            storage.set_trial_user_attr(
                trial_id,
                "reason",
                f"{worker} stopped beating for over {grace_s} s (killed, or its host is gone); "
                f"failed by {worker_id()}, candidate queued again",
            )
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        # queued even with no genes drawn yet (killed at once): the retry is then a fresh draw
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        failed.append(trial.number)
    return failed


def running_elsewhere(study: optuna.Study, mine: set[int]) -> int:
    """Trials RUNNING or WAITING that this worker does not run."""
    states = (TrialState.RUNNING, TrialState.WAITING)
    return sum(
        1 for t in study.get_trials(deepcopy=False, states=states) if t._trial_id not in mine
    )


def measurement_attr(m: Measurement) -> dict[str, Any]:
    """The measurement as a trial attribute: everything but the raw samples (those stay in
    the measuring worker's measurements.jsonl), so any host can report from the study."""
    data = m.to_dict()
    data["samples_ms"] = []
    return data


def measurement_of(attrs: dict[str, Any]) -> Measurement | None:
    data = attrs.get("measurement")
    if not isinstance(data, dict):
        return None
    try:
        return Measurement.from_dict(data)
    except Exception:  # a study written by another version: no measurement, figures stay
        return None


def budget_used(trials: list[FrozenTrial], limit: int, before: int | None = None) -> int:
    """Trials that count against ``limit`` (``trials``; those numbered below ``before``):
    all but repeats of a measured candidate (up to ``limit`` of them: past that the strategy
    is stuck and their count), those a killed process left behind (redone), queued ones and
    surplus ones."""
    used = repeats = 0
    for t in trials:
        if t.state == TrialState.WAITING or (before is not None and t.number >= before):
            continue
        outcome = t.user_attrs.get("outcome", records.INTERRUPTED)
        if t.state == TrialState.FAIL and outcome in (records.INTERRUPTED, SURPLUS):
            continue
        if outcome == records.DUPLICATE:
            repeats += 1
            used += repeats > limit
        else:
            used += 1
    return used


def study_records(
    trials: list[FrozenTrial], log: MeasurementLog | None, targets: list[str] | None = None
) -> list[TrialRecord]:
    """The records of the study's told trials (surplus ones left out), each with its own
    measurement (it may be another worker's, on another board), else ``log``'s. With
    ``targets`` (a search over several), each target's measurement comes from ``log``."""
    out = []
    for t in trials:
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        if t.user_attrs.get("outcome") == SURPLUS:
            continue
        digest = str(t.user_attrs.get("hash", ""))
        if targets:
            each = {name: _logged(log, digest, name) for name in targets}
            out.append(TrialRecord.from_attrs(t.number, t.user_attrs, each[targets[0]], each))
            continue
        m = measurement_of(t.user_attrs)
        if m is None:  # a study written before measurements were attrs
            m = _logged(log, digest, None)
        out.append(TrialRecord.from_attrs(t.number, t.user_attrs, m))
    return out


def _logged(log: MeasurementLog | None, digest: str, target: str | None) -> Measurement | None:
    cached = log.get(digest, target) if log is not None else None
    return cached[1] if cached else None


def wants_more(
    study: optuna.Study, heartbeat: Heartbeat | None, limit: int, *, wait: bool = True
) -> bool:
    """True while the study wants another trial (``limit``: the search's ``trials``). A
    shared study's (``heartbeat`` set) limit is the study's total: at it, a worker waits
    while other workers' trials run, as one of them may die and its trial be queued again
    (stale ones are failed here)."""
    while True:
        if heartbeat is not None:
            fail_stale(study, heartbeat.storage)
        if budget_used(study.get_trials(deepcopy=False), limit) < limit:
            return True
        if not wait or heartbeat is None:
            return False
        if not running_elsewhere(study, heartbeat.ids):
            return False
        time.sleep(heartbeat.interval)


def ask(
    study: optuna.Study, heartbeat: Heartbeat | None, limit: int, board: str
) -> optuna.Trial | None:
    """The next trial; with a shared study, marked with this worker and its board, beating,
    and None (told FAIL as surplus) when other workers took the last trials meanwhile."""
    with quiet():
        trial = study.ask()
    if heartbeat is None:
        return trial
    heartbeat.add(trial._trial_id)
    trial.set_user_attr("worker", worker_id())
    trial.set_user_attr("board", board)
    if budget_used(study.get_trials(deepcopy=False), limit, before=trial.number) < limit:
        return trial
    trial.set_user_attr("outcome", SURPLUS)
    trial.set_user_attr("reason", "the study had its trials when this worker asked")
    study.tell(trial, state=TrialState.FAIL)
    heartbeat.discard(trial._trial_id)
    return None
