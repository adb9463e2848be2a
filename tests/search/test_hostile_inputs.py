"""Hostile data files, spaces too big to build, out-of-range settings and the channels-first
trap (issue 16, items 6-8): each is one line and exit 2 from the CLI, before anything is
built, allocated or measured; never a traceback, never a search of the wrong thing."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hwnas_bench.cli.main import main
from search import SearchSpace
from search.build import build
from search.compress import inspect_classifier
from search.compress import load_npz as load_calibration
from search.compress.errors import CalibrationDataError
from search.errors import DataError, SettingsError, SpaceError
from search.onnx_export import to_onnx
from search.space import Candidate
from search.training.data import labels, load_npz, to_nchw
from search.training.train import TrainSettings

N = 40
Y = np.arange(N) % 3


def _x() -> np.ndarray:
    return np.random.default_rng(0).random((N, 8, 8, 1), dtype=np.float32)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _claiming(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy header that claims ``shape`` and holds no data."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes], deflate: bool = False) -> Path:
    kind = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", kind) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hwnas: error: "), err
    assert "Traceback" not in err
    return lines[0]


def _hostile(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case}.npz"
    x = _x()
    if case == "empty":
        path.write_bytes(b"")
    elif case == "npy":
        path = tmp_path / "x.npy"
        np.save(path, x)
    elif case == "header-gb":  # 256 GB claimed by a 128-byte header
        _zip(path, {"x.npy": _claiming((10**6, 256, 256, 1)), "y.npy": _npy(Y)})
    elif case == "truncated":
        _zip(path, {"x.npy": _npy(x)[:-100], "y.npy": _npy(Y)})
    elif case == "strings":  # digit strings cast to float32 without a word before
        np.savez(path, x=np.full((N, 8, 8, 1), "7"), y=Y)
    elif case == "structured":
        np.savez(path, x=np.zeros((N, 8, 8, 1), [("a", "<f4"), ("b", "<f4")]), y=Y)
    elif case == "datetime":
        np.savez(path, x=np.zeros((N, 8, 8, 1), "datetime64[s]"), y=Y)
    elif case == "complex":
        np.savez(path, x=x + 1j, y=Y)
    elif case == "object":
        np.savez(path, x=np.array([{"a": 1}] * N, dtype=object), y=Y)
    elif case == "junk":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


HOSTILE = [
    ("empty", "the file is empty"),
    ("npy", r"one \.npy array, not an \.npz"),
    ("header-gb", r"x of shape \(1000000, 256, 256, 1\) \(float32\) would take 250,000\.0 MB"),
    ("truncated", "x is truncated"),
    ("strings", r"x must be numbers, not string values \(<U1\)"),
    ("structured", "x must be numbers, not structured values"),
    ("datetime", r"x must be numbers, not datetime64 values \(datetime64\[s\]\)"),
    ("complex", r"x must be numbers, not complex values \(complex64\)"),
    ("object", r"x must be numbers, not object values"),
    ("junk", "not an .npz file"),
]


@pytest.mark.parametrize(("case", "message"), HOSTILE, ids=[c for c, _ in HOSTILE])
def test_a_hostile_data_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    out = tmp_path / "run"
    argv = ["search", "--data", str(_hostile(tmp_path, case)), "--out", str(out), "-q"]
    assert main([*argv, "--trials", "1", "--epochs", "1", "--min-time", "0.02"]) == 2
    assert re.search(message, _one_line(capsys))
    assert not (out / "measurements.jsonl").exists()  # refused before anything ran


@pytest.mark.parametrize(
    ("case", "message"),
    [c for c in HOSTILE if c[0] in ("empty", "header-gb", "strings", "datetime", "complex")],
)
@pytest.mark.parametrize("which", ["--calibration", "--eval"])
def test_a_hostile_calibration_or_eval_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str, which: str
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(to_onnx(build(Candidate.decode("in8x8x1-conv_k3_s1_c4-out3"))))
    good = tmp_path / "good.npz"
    np.savez(good, x=_x().transpose(0, 3, 1, 2), y=Y)
    bad = _hostile(tmp_path, case)
    files = {"--calibration": good, "--eval": good, which: bad}
    argv = ["compress", str(model), "--out", str(tmp_path / "o"), "-q"]
    argv += ["--calibration", str(files["--calibration"]), "--eval", str(files["--eval"])]
    assert main(argv) == 2
    assert re.search(message, _one_line(capsys))
    assert not (tmp_path / "o" / "compression.json").exists()


def test_a_zip_member_that_inflates_past_the_cap_is_refused_before_inflating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deflated member of 16 MB of zeros is a few KB on disk; with the cap at 1 MB its
    declared inflated size is refused, the header saying (40, 8, 8, 1) notwithstanding."""
    monkeypatch.setattr("search.training.data.MAX_DATA_BYTES", 1024**2)
    bomb = _npy(_x()) + bytes(16 * 1024**2)
    path = _zip(tmp_path / "bomb.npz", {"x.npy": bomb, "y.npy": _npy(Y)}, deflate=True)
    assert path.stat().st_size < 100_000
    out = tmp_path / "run"
    assert main(["search", "--data", str(path), "--out", str(out), "--trials", "1", "-q"]) == 2
    assert "x inflates to 16.0 MB, over the 1.0 MB a data file may hold" in _one_line(capsys)


def test_the_cap_counts_the_float32_the_arrays_become(tmp_path: Path) -> None:
    """uint8 pixels quadruple when they become float32: 300 KB stored, 1.2 MB in memory."""
    from search.training.data import read_npz

    x = np.zeros((300 * 1024 // 64, 8, 8, 1), np.uint8)
    np.savez(tmp_path / "u8.npz", x=x, y=np.zeros(len(x), int))
    with pytest.raises(DataError, match=r"would take 1\.2 MB, over the 1\.0 MB"):
        read_npz(tmp_path / "u8.npz", ("x",), max_bytes=1024**2)
    found, names = read_npz(tmp_path / "u8.npz", ("x", "z"), max_bytes=2 * 1024**2)
    assert names == ["x", "y"]
    assert set(found) == {"x"}
    assert np.array_equal(found["x"], x)


def test_good_files_still_load_the_same(tmp_path: Path) -> None:
    x = _x()
    np.savez_compressed(tmp_path / "c.npz", x=x, y=Y, x_test=x[:5], y_test=Y[:5])
    arrays = load_npz(tmp_path / "c.npz")
    assert np.array_equal(arrays.x, x)
    assert arrays.y.tolist() == Y.tolist()
    assert arrays.x_test is not None
    assert arrays.x_test.shape == (5, 8, 8, 1)
    fortran = np.asfortranarray(x)
    np.savez(tmp_path / "f.npz", x=fortran, y=Y.astype(np.uint8))
    assert np.array_equal(load_npz(tmp_path / "f.npz").x, x)


# --- x and y values, through the API ----------------------------------------------------


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.full((4, 8, 8, 1), "1"), r"string values \(<U1\)"),
        (np.zeros((4, 8, 8, 1), "datetime64[D]"), "datetime64 values"),
        (np.zeros((4, 8, 8, 1), complex), "complex values"),
        (np.zeros((4, 8, 8, 1), "timedelta64[s]"), "timedelta64 values"),
    ],
)
def test_x_that_is_not_numbers_is_refused(x: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=f"the images must be numbers, not {message}"):
        to_nchw(x, (8, 8, 1))


def test_labels_that_are_not_numbers_are_refused() -> None:
    for y in (np.array([1 + 0j, 0j]), np.zeros(2, "datetime64[s]")):
        with pytest.raises(DataError, match="labels must be integers"):
            labels(y)
    with pytest.raises(DataError, match="not an array"):
        to_nchw([[1.0, 2.0], [3.0]], (1, 2, 1))


def test_calibration_x_that_is_not_numbers_is_refused(tmp_path: Path) -> None:
    info = inspect_classifier(to_onnx(build(Candidate.decode("in8x8x1-conv_k3_s1_c4-out3"))))
    np.savez(tmp_path / "s.npz", x=np.full((4, 1, 8, 8), "3"), y=np.zeros(4, int))
    with pytest.raises(CalibrationDataError, match=r"x must be numbers, not string values \(<U1\)"):
        load_calibration(tmp_path / "s.npz", info)


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", str(2**70)], f"seed must be <= {2**32 - 1}, got {2**70}"),
        (["--lr", "nan"], "lr must be a finite number, got nan"),
        (["--lr", "inf"], "lr must be a finite number, got inf"),
        (["--lr", "1e6"], "lr must be <= 10"),
        (["--epochs", str(2**70)], "epochs must be <= 100000"),
        (["--batch-size", str(2**70)], "batch_size must be <= 1048576"),
        (["--trials", str(2**70)], "trials must be <= 1000000"),
        (["--threads", str(2**70)], "threads must be <= 1024"),
    ],
)
def test_out_of_range_settings_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "run"
    assert main(["search", "--dataset", "digits", "--out", str(out), "-q", *flags]) == 2
    assert message in _one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (f"seed = {2**70}", "seed must be <="),
        ("lr = nan", "lr must be a finite number, got nan"),
        ("lr = -inf", "lr must be a finite number, got -inf"),
    ],
)
def test_out_of_range_search_toml_values_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str
) -> None:
    config = tmp_path / "search.toml"
    config.write_text(toml + "\n")
    out = tmp_path / "run"
    code = main(["search", "--config", str(config), "--dataset", "digits", "--out", str(out)])
    assert code == 2
    assert message in _one_line(capsys)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"threads": 2**40}, "threads must be <= 1024"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": "0.1"}, "lr must be a finite number"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"optimizer": None}, "unknown optimizer None"),
    ],
)
def test_train_settings_out_of_range(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        TrainSettings(**kwargs).validate()  # type: ignore[arg-type]
    TrainSettings(lr=10.0, seed=2**32 - 1, threads=4).validate()  # the edges are fine


# --- spaces too big to build ---------------------------------------------------------------

SMALL = {"num_layers": [1, 2], "layer_types": ["conv", "pool", "fc"], "fc_sizes": [16]}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"conv_channels": [8, 1000000000]}, "conv_channels 1000000000: a candidate holding"),
        ({"fc_sizes": [1000000000]}, "fc_sizes 1000000000: a candidate holding"),
        ({"num_classes": 10**9}, "num_classes 1000000000: a candidate holding"),
        ({"num_layers": [1, 1000000]}, "num_layers 1000000: at most 64 searched layers"),
        ({"conv_kernels": [3, 99999]}, "conv_kernels 99999: a candidate holding"),
        ({"conv_channels": 8}, "conv_channels must be a list of choices, got 8"),
        ({"num_layers": [1, 2, 3]}, "num_layers must be an integer or a (min, max) pair"),
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
    ],
)
def test_a_space_too_big_to_build_is_one_line_before_anything_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], space: dict[str, object], message: str
) -> None:
    """Each of these made torch allocate 40-250 GB in the provider probe before."""
    import json

    config = tmp_path / "search.toml"
    lines = [f"{k} = {json.dumps(v)}" for k, v in {**SMALL, **space}.items()]
    config.write_text("[space]\n" + "\n".join(lines) + "\n")
    out = tmp_path / "run"
    argv = ["search", "--config", str(config), "--dataset", "digits", "--out", str(out), "-q"]
    assert main([*argv, "--trials", "1", "--epochs", "1"]) == 2
    assert message in _one_line(capsys)
    assert not (out / "providers.json").exists()  # the probe never ran


def test_the_space_check_is_a_true_floor() -> None:
    """No value is refused that some candidate could hold within the cap: each floor is at
    most the cost of the cheapest candidate holding the value, checked by brute force."""
    import itertools

    from search.cost import cost
    from search.space import check_space, value_floors

    space = SearchSpace(
        input_shape=(8, 8, 2),
        num_layers=(1, 2),
        layer_types=["conv", "dwconv", "pool", "fc", "skip"],
        conv_kernels=[1, 3],
        conv_strides=[1, 2],
        conv_channels=[3, 40],
        fc_sizes=[5, 70],
        num_classes=4,
    )
    names = list(space.genes)
    best: dict[tuple[str, object], float] = {}
    for values in itertools.product(*(space.genes[n] for n in names)):
        cand = space.decode(dict(zip(names, values, strict=True)))
        if not cand.is_valid():
            continue
        mb = cost(cand).memory_mb
        held = {("num_classes", 4), ("input_shape", (8, 8, 2))}
        held |= {("conv_channels", x.width) for x in cand.layers if x.kind in ("conv", "dwconv")}
        held |= {("conv_kernels", x.kernel) for x in cand.layers if x.kind in ("conv", "dwconv")}
        held |= {("fc_sizes", x.width) for x in cand.layers if x.kind == "fc"}
        for key in held:
            best[key] = min(best.get(key, mb), mb)
    floors = {(gene, value): mb for gene, value, mb in value_floors(space)}
    assert set(floors) == set(best)
    for key, mb in floors.items():
        assert 0 < mb <= best[key], key
    check_space(space)


def test_values_that_fit_one_by_one_but_not_together_are_never_built() -> None:
    """Two conv layers of 60,000 channels: each value fits the cap alone, the pair needs
    about 124 GB; build refuses it before torch allocates."""
    space = SearchSpace(input_shape=(8, 8, 1), num_layers=2, layer_types=["conv"],
                        conv_channels=[60000], num_classes=3)  # fmt: skip
    candidate = space.decode({n: c[0] for n, c in space.genes.items()})
    with pytest.raises(SpaceError, match=r"needs 12[\d,]+ MB .* a candidate may need"):
        build(candidate)


# --- the channels-first trap ----------------------------------------------------------------


def test_a_channels_first_data_file_is_refused_with_the_transpose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(N, 1, 8, 8) was searched as 1x8 images of 8 channels, at 93% instead of 98%."""
    path = tmp_path / "nchw.npz"
    np.savez(path, x=_x().transpose(0, 3, 1, 2), y=Y)
    out = tmp_path / "run"
    argv = ["search", "--data", str(path), "--out", str(out), "--trials", "1", "--epochs", "1"]
    assert main([*argv, "--min-time", "0.02", "-q"]) == 2
    line = _one_line(capsys)
    assert "x of shape (40, 1, 8, 8) looks channels-first (N, C, H, W)" in line
    assert "x.transpose(0, 2, 3, 1)" in line
    assert not (out / "measurements.jsonl").exists()
    # the rare space that really is 1 x 8 with 8 channels: asked for, it is taken as it is
    assert load_npz(path, allow_channels_first=True).input_shape == (1, 8, 8)
    assert main([*argv, "--min-time", "0.02", "-q", "--channels-first-ok"]) == 0, capsys
    said = (out / "measurements.jsonl").read_text()
    assert '"candidate": "in1x8x8-' in said, said[:300]


@pytest.mark.parametrize(
    ("shape", "refused"),
    [
        ((4, 1, 8, 8), True),
        ((4, 3, 32, 32), True),
        ((4, 8, 8, 1), False),
        ((4, 32, 32, 3), False),
        ((4, 1, 28, 1), False),  # a 1x28 signal of one channel, channels-last
        ((4, 3, 3, 3), False),  # nothing to tell
        ((4, 8, 8), False),  # grey images without a channel axis
    ],
)
def test_what_looks_channels_first(tmp_path: Path, shape: tuple[int, ...], refused: bool) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros(shape, np.float32), y=np.arange(4) % 2)
    if refused:
        with pytest.raises(DataError, match="looks channels-first"):
            load_npz(tmp_path / "d.npz")
    else:
        assert load_npz(tmp_path / "d.npz").x.shape == shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 2**70}, "rounds must be <= 100"),
        ({"fine_tune_epochs": 2**70}, "fine_tune_epochs must be <= 100000"),
        ({"calibration_samples": 0}, "calibration_samples must be >= 1"),
        ({"tolerance": float("inf")}, "tolerance must be a finite number"),
        ({"tolerance": -1.0}, "tolerance must be >= 0"),
        ({"fine_tune_lr": float("nan")}, "fine_tune_lr must be a finite number"),
    ],
)
def test_compress_settings_out_of_range(kwargs: dict[str, object], message: str) -> None:
    """``--rounds 2**70`` measured without end; ``tolerance = inf`` passed."""
    from search.compress import CompressSettings

    with pytest.raises(SettingsError, match=message):
        CompressSettings(**kwargs).validate()  # type: ignore[arg-type]
    CompressSettings(rounds=100, tolerance=100.0).validate()  # the edges are fine
