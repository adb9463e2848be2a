"""Is the agent's number the number? Agent vs in-process onnxruntime, side by side.

    python benchmarks/agent_overhead.py [--rounds 7] [--seconds 1.0] [--threads 1]

Prints, from one run on this machine:
1. the ratio of the agent-reported median latency to an in-process onnxruntime median on
   the same model, threads and input, for the ``local`` and ``ssh`` targets (a throwaway
   sshd on 127.0.0.1), for a ~0.1 ms and a ~10 ms model. Measured as interleaved pairs
   (agent, in-process, agent, ...) and summarised by the median of per-pair ratios,
   because back-to-back timings drift (see HARDWARE_FACTS). Target: 0.97 to 1.03.
2. the round-trip overhead per benchmark call with the model cached (wall time of
   ``Device.bench`` minus the time the agent spent running the model), local and SSH;
3. the payload/wire byte ratio of a 1 MB upload over a serial line (a socat pty pair),
   clean (target >= 0.97) and with 1 byte in 10,000 damaged and 1 in 10,000 dropped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from device_agent.inputs import synthesise
from hwnas_bench import BenchSettings, Device
from hwnas_bench.targets import serial_target
from hwnas_bench.testing import FaultyRelay, start_pty_pair, start_serial_agent, start_sshd
from hwnas_bench.transports.local import LocalTransport

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "~0.1 ms": ROOT / "examples/models/convnet.onnx",
    "~10 ms": ROOT / "examples/models/convnet_large.onnx",
}


def in_process_median(path: Path, threads: int, seconds: float, seed: int) -> float:
    """What a user's own loop would report: time session.run, nothing else."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = synthesise(session.get_inputs(), None, seed)
    start = time.perf_counter()
    while time.perf_counter() - start < 0.5:  # the agent's default warm-up
        session.run(None, feeds)
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(samples) < 50:
        a = time.perf_counter_ns()
        session.run(None, feeds)
        samples.append(time.perf_counter_ns() - a)
    return float(np.median(samples)) / 1e6


def ratios(device: Device, path: Path, args: argparse.Namespace) -> list[float]:
    settings = BenchSettings(threads=args.threads, min_time_s=args.seconds, seed=0)
    device.bench(path, settings, min_time_s=0.2)  # upload and load once, outside the pairs
    pairs = []
    for _ in range(args.rounds):
        agent = device.bench(path, settings).latency.median_ms
        local = in_process_median(path, args.threads, args.seconds, seed=0)
        pairs.append(agent / local)
    return pairs


def call_overhead_ms(device: Device, path: Path, calls: int = 30) -> float:
    quick = BenchSettings(warmup_runs=0, warmup_min_s=0, min_iterations=1, min_time_s=0, threads=1)
    device.bench(path, quick)
    overheads = []
    for _ in range(calls):
        start = time.perf_counter()
        m = device.bench(path, quick)
        wall = time.perf_counter() - start
        overheads.append((wall - (m.window_s or 0) - m.warmup["seconds"]) * 1e3)
    return statistics.median(overheads)


def upload_ratio(
    port: Path, host_port: Path, model: bytes, work: Path, name: str
) -> tuple[float, float]:
    agent = start_serial_agent(port, work / f"cache-{name}", log_level="ERROR")
    device = serial_target(f"{host_port}@4000000").device(timeout=300)
    try:
        device.open()
        before = device.channel.stats.wire_tx + device.channel.stats.wire_rx
        start = time.perf_counter()
        device.put_model(model)
        seconds = time.perf_counter() - start
        wire = device.channel.stats.wire_tx + device.channel.stats.wire_rx - before
        return len(model) / wire, seconds
    finally:
        device.close()
        agent.kill()
        agent.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hwnas-bench-"))
    sshd = start_sshd(work / "sshd")
    devices = {
        "local": Device(LocalTransport(cache_dir=work / "cache-local")),
        "ssh": sshd.target("ssh").device(),
    }
    print(
        f"onnxruntime {ort.__version__}, threads={args.threads}, rounds={args.rounds}, "
        f"{args.seconds:.1f} s per measurement\n"
    )
    print("1. agent median / in-process median (median of interleaved pairs; target 0.97-1.03)")
    for label, path in MODELS.items():
        for name, device in devices.items():
            pairs = ratios(device, path, args)
            print(
                f"   {path.name:20s} {label:8s} {name:5s}  ratio {statistics.median(pairs):.3f}"
                f"   (pairs {min(pairs):.3f} .. {max(pairs):.3f})"
            )
    print("\n2. round-trip overhead per bench call, model cached (wall - agent's timed work)")
    for name, device in devices.items():
        print(f"   {name:5s} {call_overhead_ms(device, MODELS['~0.1 ms']):7.2f} ms per call")
    for device in devices.values():
        device.close()
    sshd.stop()

    print("\n3. serial upload of a 1 MB model: payload bytes / wire bytes (both directions)")
    sys.path.insert(0, str(ROOT / "examples/models"))
    from make_models import mlp

    model = mlp(hidden=2048, features=120, seed=3).SerializeToString()
    clean = start_pty_pair(work, "clean")
    ratio, seconds = upload_ratio(clean.a, clean.b, model, work, "clean")
    print(f"   clean line        {ratio:.3f}  (target >= 0.97; {len(model)} B in {seconds:.1f} s)")
    clean.stop()
    agent_side, host_side = start_pty_pair(work, "na"), start_pty_pair(work, "nh")
    relay = FaultyRelay(agent_side.b, host_side.a, corrupt_rate=1e-4, drop_rate=1e-4, seed=7)
    ratio, seconds = upload_ratio(agent_side.a, host_side.b, model, work, "noisy")
    print(
        f"   1e-4 flip + drop  {ratio:.3f}  ({seconds:.1f} s; {relay.stats.corrupted} bytes "
        f"flipped, {relay.stats.dropped} dropped)"
    )
    relay.stop()
    agent_side.stop()
    host_side.stop()


if __name__ == "__main__":
    main()
