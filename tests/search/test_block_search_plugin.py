"""A block kind added from outside the package (an installed distribution publishing the
``hwnas`` entry-point group with a ``hwnas_search_blocks`` hook) searches end to end
(issue 19, done-when 3). The plugin is tests/data/hwnas-blocks-pointwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..plugin_site import pip_install_target

PLUGIN = Path(__file__).resolve().parent.parent / "data" / "hwnas-blocks-pointwise"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import onnx
    from search import Searcher, SearchSpace

    rng = np.random.default_rng(0)
    x = rng.random((48, 16, 16, 3), dtype=np.float32)
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype(int)
    space = SearchSpace(
        input_shape=(16, 16, 3),
        stages={"stage": [{"kind": "pointwise", "depth": [1, 2], "widths": [8, 16], "stride": 2}]},
    )
    out = sys.argv[1]
    searcher = Searcher(space, strategy="evolution", epochs=1, trials=3, out=out,
                        bench={"min_time_s": 0.02, "min_iterations": 5, "warmup_min_s": 0.0})
    best = searcher.search(x, y)
    ops = sorted({n.op_type for n in onnx.load(out + "/best.onnx").graph.node})
    print(json.dumps({"candidate": best.candidate.encode(), "ops": ops}))
    """
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --target``: a real dist-info with its entry point."""
    return pip_install_target(PLUGIN, tmp_path_factory.mktemp("site"), "hwnas_blocks_pointwise")


def test_a_plugin_block_kind_searches_end_to_end(site: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HWNAS_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "-pw_s2_c" in found["candidate"]
    assert "BatchNormalization" not in found["ops"]
    measured = (tmp_path / "run" / "measurements.jsonl").read_text().splitlines()
    assert measured
    assert all("pw_s2_" in json.loads(line)["candidate"] for line in measured)


def test_without_the_plugin_the_kind_is_unknown(tmp_path: Path) -> None:
    from search import SearchSpace
    from search.errors import SpaceError

    with pytest.raises(SpaceError, match="unknown stage kind 'pointwise'"):
        SearchSpace(
            input_shape=(16, 16, 3),
            stages={"stage": [{"kind": "pointwise", "depth": 1, "widths": [8]}]},
        )
