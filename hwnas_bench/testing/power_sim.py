"""A simulated INA226 power monitor in a fake /sys, whose power follows the agent's CPU use.

The agent reads it as it reads a real board's meter: through ``--power-root ROOT`` (a local
target's ``power_root`` option), the hwmon ``ina2xx`` finder and ``power1_input`` in µW.
Power is ``idle_w + k_w × busy cores`` of the watched processes, so energy grows with the
work done, as on a board; a busy process that is not watched leaves it at idle.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

#: Where the meter lies under the root, as the kernel's ina2xx driver registers it.
HWMON_DIR = "sys/class/hwmon/hwmon0"
#: How often the processes are scanned for agents started on this root.
AGENT_RESCAN_S = 0.2
#: The INA226's conversion periods, from its averaging and conversion-time settings (ms).
INA226_UPDATE_INTERVAL_MS = range(2, 2254)

_CLOCK_TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path``'s content at once: a reader sees the old text or the new, never part."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)


def layout_ina226(root: Path, microwatts: int, update_interval_ms: int = 5) -> Path:
    """Lay out ``root/sys/class/hwmon/hwmon0`` as an INA226 under the ina2xx driver: ``name``,
    ``power1_input`` (µW) and ``update_interval`` (ms). Returns the hwmon directory."""
    if update_interval_ms not in INA226_UPDATE_INTERVAL_MS:
        raise ValueError(f"update_interval_ms={update_interval_ms}: an INA226 takes 2-2253 ms")
    if microwatts < 0:
        raise ValueError(f"microwatts={microwatts}: power1_input is never negative")
    hwmon = root / HWMON_DIR
    hwmon.mkdir(parents=True, exist_ok=True)
    write_atomically(hwmon / "name", "ina226\n")
    write_atomically(hwmon / "update_interval", f"{update_interval_ms}\n")
    write_atomically(hwmon / "power1_input", f"{microwatts}\n")
    return hwmon


def thread_run_ns(pid: int) -> dict[int, int] | None:
    """CPU time of each thread of ``pid`` in ns; None once the process is gone.

    ``schedstat``'s run time is in ns; where the kernel lacks it, ``stat``'s utime + stime
    (clock ticks, 10 ms on most kernels) stands in."""
    tasks = f"/proc/{pid}/task"
    try:
        tids = os.listdir(tasks)
    except OSError:
        return None
    times: dict[int, int] = {}
    for tid in tids:
        try:
            times[int(tid)] = _schedstat_ns(f"{tasks}/{tid}")
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
    return times


def _schedstat_ns(task: str) -> int:
    try:
        with open(f"{task}/schedstat", "rb") as f:
            return int(f.read().split()[0])
    except FileNotFoundError:
        with open(f"{task}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name in () may hold spaces
        return int((int(fields[11]) + int(fields[12])) * _CLOCK_TICK_NS)  # utime, stime


def agents_on(root: Path) -> set[int]:
    """Processes started with ``--power-root`` naming ``root`` (agents reading this meter)."""
    wanted = os.path.realpath(root)
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue  # ended, or another user's
        given = _power_root_arg(argv)
        if given is None:
            continue
        if not os.path.isabs(given):
            try:
                given = os.path.join(os.readlink(f"/proc/{entry}/cwd"), given)
            except OSError:
                continue
        if os.path.realpath(given) == wanted:
            found.add(int(entry))
    return found


def _power_root_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--power-root" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--power-root="):
            return arg.split("=", 1)[1]
    return None


class SimulatedIna226:
    """An INA226 at ``root/sys/class/hwmon/hwmon0`` whose ``power1_input`` follows CPU use.

    Every ``update_interval_ms`` (as the chip converts) a daemon thread writes
    ``idle_w + k_w × busy cores``, busy cores being the CPU time of the watched processes'
    threads over the interval. Watched: ``pids``, and every process whose command line holds
    ``--power-root ROOT`` (rescanned every 0.2 s). Writes are atomic.

    ``with SimulatedIna226(root) as meter:`` starts it; then
    ``TargetSpec("metered", "local", {"power_root": str(root)})`` is a metered board.
    """

    def __init__(
        self,
        root: Path,
        idle_w: float = 2.0,
        k_w: float = 3.0,
        update_interval_ms: int = 5,
        pids: Iterable[int] = (),
    ) -> None:
        if idle_w < 0 or k_w < 0:
            raise ValueError(f"idle_w={idle_w}, k_w={k_w}: power is never negative")
        if update_interval_ms not in INA226_UPDATE_INTERVAL_MS:
            raise ValueError(f"update_interval_ms={update_interval_ms}: an INA226 takes 2-2253 ms")
        self.root = Path(root)
        self.idle_w = idle_w
        self.k_w = k_w
        self.update_interval_ms = update_interval_ms
        self.hwmon = self.root / HWMON_DIR
        self.power_path = self.hwmon / "power1_input"
        self._pids = set(pids)  # guarded by _changed
        self._agents: set[int] = set()  # found by the scan; guarded by _changed
        self._last: dict[int, dict[int, int]] = {}  # pid -> thread -> run ns at the last update
        self._power_w = idle_w
        self._updates = 0
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def power_w(self) -> float:
        """The power last written, in W."""
        return self._power_w

    @property
    def updates(self) -> int:
        """How many conversions have been written since :meth:`start`."""
        return self._updates

    @property
    def watched(self) -> frozenset[int]:
        """The processes whose CPU time counts now (the given pids and the agents found)."""
        with self._changed:
            return frozenset(self._last)

    def start(self) -> SimulatedIna226:
        """Lay out the tree at idle power, then keep it updated until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("a SimulatedIna226 is started once")
        layout_ina226(self.root, round(self.idle_w * 1e6), self.update_interval_ms)
        self._thread = threading.Thread(target=self._run, name="simulated-ina226", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the writer thread (at once: its waits end on the stop event); the files stay."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                raise RuntimeError("the simulated INA226's writer did not stop within 5 s")

    def wait_updates(self, n: int = 1, timeout: float = 5.0) -> int:
        """Wait until ``n`` more conversions are written; return the count so far."""
        with self._changed:
            goal = self._updates + n
            if not self._changed.wait_for(lambda: self._updates >= goal or self._ended(), timeout):
                raise TimeoutError(f"{n} update(s) of {self.power_path} not within {timeout} s")
            self._raise_if_ended()
            return self._updates

    def wait_for_agent(self, timeout: float = 10.0) -> frozenset[int]:
        """Wait until an agent started on this root is watched (its CPU time counts from the
        next conversion on); return the agents' pids."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: bool(self._agents & self._last.keys()) or self._ended(), timeout
            ):
                raise TimeoutError(f"no agent with --power-root {self.root} within {timeout} s")
            self._raise_if_ended()
            return frozenset(self._agents & self._last.keys())

    def _ended(self) -> bool:
        return self._error is not None or self._stopping.is_set()

    def _raise_if_ended(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the simulated INA226's writer failed: {self._error}")
        if self._stopping.is_set():
            raise RuntimeError("the simulated INA226 was stopped")

    def _run(self) -> None:
        try:
            self._convert_until_stopped()
        except BaseException as exc:  # kept for the waiters, who would otherwise time out
            with self._changed:
                self._error = exc
                self._changed.notify_all()
            raise

    def _convert_until_stopped(self) -> None:
        interval = self.update_interval_ms / 1000.0
        last = time.monotonic()
        next_update, next_scan = last + interval, last
        while not self._stopping.wait(max(0.0, next_update - time.monotonic())):
            now = time.monotonic()
            if now >= next_scan:
                self._rescan()
                next_scan = now + AGENT_RESCAN_S
            now, busy_ns = time.monotonic(), self._busy_ns()
            cores = min(busy_ns / max(now - last, 1e-9) / 1e9, float(os.cpu_count() or 1))
            last = now
            power_w = self.idle_w + self.k_w * cores
            write_atomically(self.power_path, f"{round(power_w * 1e6)}\n")
            with self._changed:
                self._power_w = power_w
                self._updates += 1
                self._changed.notify_all()
            next_update += interval
            if next_update < now:  # the writer was held up: the chip skips, it does not catch up
                next_update = now + interval

    def _rescan(self) -> None:
        agents = agents_on(self.root)
        with self._changed:
            self._agents = agents

    def _busy_ns(self) -> int:
        """CPU time of the watched processes since the last update. A process seen for the
        first time only sets its starting point (its past is not this interval's)."""
        with self._changed:
            wanted = self._pids | self._agents
        busy = 0
        current: dict[int, dict[int, int]] = {}
        for pid in wanted:
            times = thread_run_ns(pid)
            if times is None:
                continue  # ended
            before = self._last.get(pid)
            if before is not None:
                # a thread not seen before started after the last update: all its time counts
                busy += sum(max(0, ns - before.get(tid, 0)) for tid, ns in times.items())
            current[pid] = times
        with self._changed:
            self._last = current
        return busy

    def __enter__(self) -> SimulatedIna226:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
