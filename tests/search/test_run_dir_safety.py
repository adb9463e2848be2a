"""The run directory and the latency-table cache against another user: planted links, FIFOs,
special files and directories of someone else are refused untouched, never followed; a
place the search cannot write, or a garbage file in it, is one line and exit 2."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from hwnas_bench.cli.main import main
from search import Searcher, SearchSpace, files
from search.errors import SettingsError
from search.predict import store

SPACE = dict(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])
IS_ROOT = os.geteuid() == 0
OTHER_UID = 65534  # nobody
PRECIOUS = "root's own file\n"


def _data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), np.arange(n) % 3


def _npz(tmp_path: Path) -> Path:
    x, y = _data()
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    return path


def _search_args(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    data = _npz(tmp_path)
    return [
        "search",
        *("--data", str(data), "--out", str(out), "--trials", "1", "--epochs", "1"),
        *("--min-time", "0.02", "-q", *extra),
    ]


def _one_error_line(err: str, *words: str) -> None:
    """One ``hwnas: error:`` line (a note such as "nothing to resume" may come before it)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("hwnas: error: ")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], err


def _searcher(out: Path, **kwargs: object) -> Searcher:
    return Searcher(SearchSpace(**SPACE), trials=1, epochs=1, batch_size=64, out=out, **kwargs)  # type: ignore[arg-type]


# -- the helpers ----------------------------------------------------------------------------


def test_write_file_replaces_a_planted_link_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    planted = tmp_path / "summary.md"
    planted.symlink_to(victim)
    assert files.write_file(planted, "report\n")
    assert victim.read_text() == PRECIOUS
    assert not planted.is_symlink()
    assert planted.read_text() == "report\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_file_keeps_an_unchanged_file_and_its_date(tmp_path: Path) -> None:
    path = tmp_path / "pareto.json"
    files.write_file(path, "{}")
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert not files.write_file(path, "{}")
    assert path.stat().st_mtime == 1_000_000_000
    assert files.write_file(path, "{ }")
    assert path.read_text() == "{ }"


@pytest.mark.parametrize("kind", ["symlink", "fifo", "hardlink"])
def test_an_appended_file_must_be_a_regular_file_of_one_name(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    log = tmp_path / "measurements.jsonl"
    if kind == "symlink":
        log.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        os.link(victim, log)
    with pytest.raises(SettingsError, match=r"refusing .*measurements.jsonl"):
        files.open_append(log)
    assert victim.read_text() == PRECIOUS


def test_read_file_reads_no_fifo_and_at_most_its_cap(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SettingsError, match=r"not a regular file"):
        files.read_file(fifo, 100)  # returns at once: O_NONBLOCK, then refused
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(SettingsError, match=r"larger than 100"):
        files.read_file(big, 100)


# -- the run directory ----------------------------------------------------------------------


PLANTED = [
    "best.onnx",
    "summary.md",
    "pareto.json",
    "pareto.png",
    "providers.json",
    "measurements.jsonl",
    "study.db",
    "search.json",
    ".search.lock",
    "models",
]


@pytest.mark.parametrize("name", PLANTED)
def test_a_planted_link_in_the_run_directory_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    victim_dir = tmp_path / "root-home"
    victim_dir.mkdir()
    victim = victim_dir / "precious"
    victim.write_text(PRECIOUS)
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(victim_dir if name == "models" else victim)
    assert main(_search_args(tmp_path, out)) == 2
    _one_error_line(capsys.readouterr().err, "refusing", name, "symbolic link")
    assert victim.read_text() == PRECIOUS
    assert sorted(p.name for p in victim_dir.iterdir()) == ["precious"]
    assert (out / name).is_symlink()  # refused untouched


def test_a_link_deep_in_models_or_targets_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "precious"
    victim.write_text(PRECIOUS)
    out = tmp_path / "run"
    (out / "targets" / "local").mkdir(parents=True)
    (out / "targets" / "local" / "model_card.json").symlink_to(victim)
    x, y = _data()
    searcher = _searcher(out)
    with pytest.raises(SettingsError, match=r"model_card.json: it is a symbolic link"):
        searcher.search(x, y)
    assert victim.read_text() == PRECIOUS


@pytest.mark.skipif(
    not IS_ROOT and not os.environ.get("CI"), reason="needs root to chown to another user"
)
def test_an_out_directory_of_another_user_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    os.chown(out, OTHER_UID, OTHER_UID)
    assert main(_search_args(tmp_path, out)) == 2
    _one_error_line(capsys.readouterr().err, "belongs to another user", f"uid {OTHER_UID}")
    written = {".search.lock", "search.json", "study.db", "models", "command.json"}
    assert not written & set(os.listdir(out))


@pytest.mark.skipif(
    not IS_ROOT and not os.environ.get("CI"), reason="needs root to chown to another user"
)
def test_a_file_of_another_user_in_the_run_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "models").mkdir(parents=True)
    theirs = out / "models" / "abc.onnx"
    theirs.write_bytes(b"theirs")
    os.chown(theirs, OTHER_UID, OTHER_UID)
    x, y = _data()
    searcher = _searcher(out)
    with pytest.raises(SettingsError, match=r"abc.onnx: it belongs to another user"):
        searcher.search(x, y)


def test_a_fifo_in_the_run_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / "pareto.json")
    x, y = _data()
    searcher = _searcher(out)
    with pytest.raises(SettingsError, match=r"pareto.json: it is not a regular file"):
        searcher.search(x, y)


# -- places the search cannot use, garbage in the directory ---------------------------------


def test_out_under_proc_is_a_settings_error(tmp_path: Path) -> None:
    x, y = _data()
    with pytest.raises(SettingsError, match=r"cannot use /proc/hwnas-x as a run directory"):
        _searcher(Path("/proc/hwnas-x")).search(x, y)


_READ_ONLY = """
import sys
import numpy as np
from pathlib import Path
from search import Searcher, SearchSpace
from search.errors import SettingsError
rng = np.random.default_rng(0)
x, y = rng.random((40, 8, 8, 1), dtype=np.float32), np.arange(40) % 3
space = SearchSpace(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])
try:
    Searcher(space, trials=1, epochs=1, out=Path(sys.argv[1])).search(x, y)
except SettingsError as exc:
    print("refused:", exc)
"""


def test_a_read_only_out_directory_is_a_settings_error() -> None:
    """Run as another user where the tests run as root (root writes anywhere)."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="hwnas-ro-", dir="/tmp"))  # others can reach it
    try:
        os.chmod(base, 0o755)
        out = base / "run"
        out.mkdir(mode=0o555)
        os.chmod(out, 0o555)
        as_user: list[str] = []
        if IS_ROOT:
            os.chown(out, OTHER_UID, OTHER_UID)
            as_user = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
        env = {**os.environ, "HOME": str(base), "HWNAS_CACHE_DIR": str(base / "cache")}
        proc = subprocess.run(
            [*as_user, sys.executable, "-c", _READ_ONLY, str(out)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"refused: cannot lock {out}: Permission denied" in proc.stdout, proc.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_garbage_study_db_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "study.db").write_bytes(b"this is not a database\n" * 10)
    assert main(_search_args(tmp_path, out)) == 2
    _one_error_line(capsys.readouterr().err, "study.db", "not an SQLite")


@pytest.mark.parametrize(
    "line",
    [
        b"[1, 2, 3]",
        b'{"hash": "abc"}',
        b'{"hash": "abc", "candidate": "x", "measurement": {"schema": "nope"}}',
        b'{"hash": 5, "candidate": "x", "measurement": {}}',
    ],
)
def test_resume_with_a_malformed_measurement_log_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "measurements.jsonl").write_bytes(b"\xff\xfe not json at all\n" + line + b"\n")
    assert main(_search_args(tmp_path, out, "--resume")) == 2
    _one_error_line(capsys.readouterr().err, "measurements.jsonl line 2")


@pytest.mark.parametrize("text", ["{not json", "[1]", "[" * 100_000 + "]" * 100_000])
def test_resume_with_a_malformed_search_json_is_a_settings_error(tmp_path: Path, text: str) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "search.json").write_text(text)
    (out / "measurements.jsonl").write_text("")  # the run had started
    x, y = _data()
    with pytest.raises(SettingsError, match=r"search.json is not a search's record"):
        _searcher(out, resume=True).search(x, y)


@pytest.mark.parametrize("text", ["{not json", "[1]", "[" * 100_000 + "]" * 100_000])
def test_resume_with_a_malformed_search_json_is_one_line_from_the_cli(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "search.json").write_text(text)
    (out / "measurements.jsonl").write_text("")
    assert main(["search", "--resume", "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "search.json is not a search's record")


def test_out_under_proc_is_one_line_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_search_args(tmp_path, Path("/proc/hwnas-x"))) == 2
    _one_error_line(capsys.readouterr().err, "cannot use /proc/hwnas-x as a run directory")


# -- the latency-table cache ----------------------------------------------------------------

_READ = """
import resource, sys, warnings
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from search.predict import store
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    entries = store.read_entries(Path(sys.argv[1]), "fp", "p50")
print(len(entries), "|", "; ".join(str(w.message) for w in seen))
"""


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_cache_file_that_is_a_fifo_or_dev_zero_is_skipped_at_once(
    tmp_path: Path, kind: str
) -> None:
    """In a process of its own, with a memory limit: the old code hung on the FIFO and read
    /dev/zero until MemoryError."""
    path = tmp_path / "0123456789abcdef.json"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    proc = subprocess.run(
        [sys.executable, "-c", _READ, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, _, said = proc.stdout.partition("|")
    assert count.strip() == "0"
    assert "latency table" in said
    assert ("symbolic link" if kind == "dev-zero" else "not a regular file") in said


def test_a_cache_file_that_is_a_fifo_does_not_hang_in_process(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    os.mkfifo(path)
    done: list[dict[str, store.TableEntry]] = []

    def read() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            done.append(store.read_entries(path, "fp", "p50"))

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert done == [{}], "read_entries hung on a FIFO"


def test_a_dangling_lock_link_does_not_create_its_target(tmp_path: Path) -> None:
    path = tmp_path / "0123456789abcdef.json"
    target = tmp_path / "elsewhere" / "created-by-the-search"
    target.parent.mkdir()
    path.with_name(path.name + ".lock").symlink_to(target)
    with pytest.raises(OSError, match=r"symbolic link"):
        store.write_entries(path, {"fingerprint": "fp", "stat": "p50"}, {})
    assert not target.exists()
    assert not path.exists()


def test_a_cache_lock_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    os.mkfifo(path.with_name(path.name + ".lock"))
    with pytest.raises(OSError, match=r"not a regular file"):
        store.write_entries(path, {"fingerprint": "fp", "stat": "p50"}, {})
    assert stat.S_ISFIFO(os.lstat(path.with_name(path.name + ".lock")).st_mode)


def test_a_table_written_over_a_planted_link_leaves_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    path = tmp_path / "t.json"
    path.symlink_to(victim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store.write_entries(path, {"fingerprint": "fp", "stat": "p50"}, {})
    assert victim.read_text() == PRECIOUS
    assert json.loads(path.read_text())["schema"] == store.SCHEMA


def test_settings_error_is_the_root_of_the_refusal() -> None:
    """A refusal is a bad input (exit 2 through the CLI's SettingsError branch)."""
    assert issubclass(files.UnsafeRunDirError, SettingsError)
