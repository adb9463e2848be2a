"""Make the variants, measure them on the board, choose one.

Two entry points: :func:`compress_searched` for a model the search made (its torch module
and data split: quantization and pruning), :func:`compress_onnx` for any ONNX classifier
(quantization; pruning too when the file is one the search exported and labelled data for
fine-tuning and a separate evaluation set are given).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..build import CandidateNet
from ..errors import SearchError
from ..measure import Board
from ..onnx_export import from_onnx, to_onnx
from ..training.data import Split
from .choose import Variant, choose
from .data import Labelled, load_npz
from .errors import NoPowerMeterError
from .measure import measure_interleaved
from .model import ClassifierInfo, OrtClassifier, inspect_classifier
from .prune import channel_count, fine_tune, prunable_widths, prune
from .quantize import StaticQuantizer, fc_share, preprocess, quantize_dynamic_fc
from .result import FC_HEAVY, CompressionResult, CompressSettings
from .sensitivity import Precision, calibrate_precision, keep_in_float, points

if TYPE_CHECKING:
    from ..loop.result import SearchedModel

Log = Callable[[str], None]


def _nothing(_: str) -> None:
    pass


def check_settings(settings: CompressSettings, board: Board) -> None:
    """Settings first, and ``objective="energy"`` on a board without a power meter refused,
    before any model or file is read."""
    settings.validate()
    if settings.objective == "energy":
        require_power_meter(board)


def require_power_meter(board: Board) -> None:
    """Refuse ``objective="energy"`` on a board that cannot measure energy."""
    if not board.facts:
        board.connect()
    if not board.has_power_meter:
        raise NoPowerMeterError(
            f"objective energy needs a power meter, and board '{board.board_name or board.what}' "
            "has none; use objective latency, or add a meter to the board's config"
        )


class _Maker:
    """Builds the variants of one fp32 model against one evaluation set."""

    def __init__(
        self,
        fp32: bytes,
        info: ClassifierInfo,
        calibration: Labelled,
        evaluation: Labelled,
        settings: CompressSettings,
        log: Log,
    ) -> None:
        assert evaluation.y is not None
        self.info, self.settings, self.log = info, settings, log
        self.calibration = calibration.subset(settings.calibration_samples, settings.seed)
        self.eval_x, self.eval_y = evaluation.x, evaluation.y
        self.fp32 = Variant("fp32", "fp32", fp32, self.accuracy(fp32))
        self.precision: Precision | None = None

    def accuracy(self, model: bytes) -> float:
        return OrtClassifier(model, self.info).accuracy(self.eval_x, self.eval_y)

    def quantized(
        self, model: bytes, prefix: str = "", float_accuracy: float | None = None
    ) -> list[Variant]:
        """The static int8 variant (calibrated, sensitive layers in float) and, for
        fc-heavy models, the dynamic one."""
        s, fp32_acc = self.settings, self.fp32.accuracy
        assert fp32_acc is not None
        pre = preprocess(model)
        quantizer = StaticQuantizer(pre, self.info, self.calibration.x, per_channel=s.per_channel)
        try:
            if self.precision is None:  # the unpruned model: choose the method
                self.log(f"{prefix}int8: calibrating with {', '.join(s.methods)}")
                found = calibrate_precision(
                    quantizer,
                    self.accuracy,
                    fp32=fp32_acc,
                    tolerance=s.tolerance,
                    methods=s.methods,
                )
                self.precision = found
            else:  # a pruned model: the method chosen for the unpruned one
                method = self.precision.method
                q = quantizer.quantize(method)
                acc = self.accuracy(q)
                found = Precision(q, method, acc, {method: acc})
                # float layers cannot win back what pruning itself lost
                if float_accuracy is None or points(fp32_acc, float_accuracy) <= s.tolerance:
                    found = keep_in_float(quantizer, self.accuracy, fp32_acc, s.tolerance, found)
        finally:
            quantizer.close()
        name = f"{prefix}int8"
        kind = "int8 static (QDQ" + (", per-channel)" if s.per_channel else ", per-tensor)")
        out = [Variant(name, kind, found.model, found.accuracy, details=found.to_dict())]
        share = fc_share(pre)
        if not prefix and (s.dynamic == "on" or (s.dynamic == "auto" and share >= FC_HEAVY)):
            self.log("int8_dynamic: fully-connected layers")
            dyn = quantize_dynamic_fc(pre)
            details = {"fc_share_of_macs": round(share, 4), "quantized": "MatMul (from Gemm)"}
            out.append(
                Variant("int8_dynamic", "int8 dynamic (fc)", dyn, self.accuracy(dyn), details)
            )
        return out

    def pruned(self, net: CandidateNet, train: Split) -> tuple[list[Variant], list[str]]:
        s = self.settings
        variants: list[Variant] = []
        notes: list[str] = []
        if prunable_widths(net.candidate) == 0:
            return [], [f"{net.candidate.encode()} has no layer to prune"]
        seen = {net.candidate.encode()}
        for ratio in s.prune_ratios:
            name = f"pruned{round(100 * ratio)}"
            epochs = s.fine_tune_epochs
            self.log(f"{name}: pruning {ratio:.0%} of the channels, fine-tuning {epochs} epochs")
            small = prune(net, ratio, importance=s.importance, data=train, seed=s.seed)
            encoding = small.candidate.encode()
            if encoding in seen:
                notes.append(f"{name} left the same widths as a smaller ratio: skipped")
                continue
            seen.add(encoding)
            fine_tune(small, train, epochs=s.fine_tune_epochs, lr=s.fine_tune_lr, seed=s.seed)
            model = to_onnx(small)
            details = {
                "ratio": ratio,
                "importance": s.importance,
                "candidate": encoding,
                "channels": [channel_count(net), channel_count(small)],
                "fine_tune_epochs": s.fine_tune_epochs,
            }
            acc = self.accuracy(model)
            variants.append(Variant(name, "pruned", model, acc, details))
            for q in self.quantized(model, prefix=f"{name}_", float_accuracy=acc):
                q.kind = f"pruned + {q.kind}"
                q.details["candidate"] = encoding
                variants.append(q)
        return variants, notes


def _compress(
    fp32: bytes,
    board: Board,
    calibration: Labelled,
    evaluation: Labelled,
    settings: CompressSettings,
    *,
    name: str,
    net: CandidateNet | None,
    train: Split | None,
    notes: list[str],
    out: str | Path | None,
    log: Log,
) -> CompressionResult:
    info = inspect_classifier(fp32, name)
    log(f"fp32: accuracy on {evaluation.source}")
    maker = _Maker(fp32, info, calibration, evaluation, settings, log)
    variants = [maker.fp32, *maker.quantized(fp32)]
    if net is not None and train is not None and settings.prune_ratios:
        more, why = maker.pruned(net, train)
        variants += more
        notes += why
    rounds = settings.rounds
    log(f"measuring {len(variants)} variants x {rounds} rounds on {board.what}")
    timings = measure_interleaved(
        board,
        [v.model for v in variants],
        [f"{name} {v.name}" for v in variants],
        rounds=rounds,
        bench=settings.bench,
        stat=settings.latency_stat,
    )
    for v, t in zip(variants, timings, strict=True):
        v.timing = t
    chosen = choose(
        variants, tolerance=settings.tolerance, objective=settings.objective, margin=settings.margin
    )
    precision = maker.precision
    result = CompressionResult(
        model_name=name,
        variants=variants,
        chosen=chosen,
        settings=settings,
        board=board.board_name or board.what,
        target=board.what,
        calibration={
            "source": calibration.source,
            "samples": len(maker.calibration),
            "method": None if precision is None else precision.method,
            "per_channel": settings.per_channel,
        },
        evaluation={"source": evaluation.source, "samples": len(evaluation)},
        precision=precision,
        notes=notes,
    )
    if out is not None:
        result.write(out)
    return result


def compress_searched(
    model: CandidateNet | SearchedModel,
    data: Split,
    board: Board,
    *,
    settings: CompressSettings | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    log: Log | None = None,
) -> CompressionResult:
    """Compress a model the search made: fp32, int8 (and dynamic int8 where fc-heavy),
    pruned at ``settings.prune_ratios`` (fine-tuned on ``data``'s training part) and each
    pruned one in int8, all measured on ``board``; accuracy on ``data``'s validation part,
    calibration on a seeded draw from its training part. ``model`` is a :class:`CandidateNet`
    or a ``SearchedModel`` (its ``.module``). With ``out``, writes ``<variant>.onnx`` and
    ``compression.json`` there."""
    settings = settings or CompressSettings()
    check_settings(settings, board)
    net = model if isinstance(model, CandidateNet) else model.module
    fp32 = to_onnx(net)
    info = inspect_classifier(fp32, net.candidate.encode())
    from .data import check_arrays

    calibration = check_arrays(data.x_train, data.y_train, info, "the training split")
    evaluation = check_arrays(data.x_val, data.y_val, info, "the validation split")
    return _compress(
        fp32,
        board,
        calibration,
        evaluation,
        settings,
        name=name or net.candidate.hash,
        net=net,
        train=data,
        notes=[],
        out=out,
        log=log or _nothing,
    )


def compress_onnx(
    model: bytes | str | Path,
    board: Board,
    *,
    calibration: Labelled | str | Path,
    evaluation: Labelled | str | Path | None = None,
    settings: CompressSettings | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    log: Log | None = None,
) -> CompressionResult:
    """Compress any ONNX classifier: ``calibration`` (and ``evaluation``) are ``.npz`` paths
    holding ``x`` laid out as the model's input and integer labels ``y``, or
    :class:`Labelled` arrays. Without ``evaluation`` the accuracy is measured on the
    calibration data. Pruning runs only for a model the search exported (metadata
    ``hwnas.candidate``), fine-tuned on the calibration data, when ``evaluation`` is given."""
    settings = settings or CompressSettings()
    check_settings(settings, board)
    if isinstance(model, (str, Path)):
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as exc:
            from .errors import NotAClassifierError

            raise NotAClassifierError(f"cannot read {path}: {exc}") from exc
        label = name or path.name
    else:
        data, label = model, name or "model"
    info = inspect_classifier(data, label)
    calib = calibration if isinstance(calibration, Labelled) else None
    if calib is None:
        assert not isinstance(calibration, Labelled)
        calib = load_npz(calibration, info, need_labels=evaluation is None)
    if evaluation is None:
        evalset = calib
    elif isinstance(evaluation, Labelled):
        evalset = evaluation
    else:
        evalset = load_npz(evaluation, info)
    if evalset.y is None:
        from .errors import CalibrationDataError

        raise CalibrationDataError(f"{evalset.source}: no labels y to measure accuracy with")
    net, train, notes = _torch_module(data, info, calib, evalset, evaluation is not None)
    return _compress(
        data, board, calib, evalset, settings,
        name=label, net=net, train=train, notes=notes, out=out, log=log or _nothing,
    )  # fmt: skip


def _torch_module(
    data: bytes, info: ClassifierInfo, calib: Labelled, evalset: Labelled, separate_eval: bool
) -> tuple[CandidateNet | None, Split | None, list[str]]:
    """The module to prune, when the file is one the search wrote and the data allows."""
    if info.candidate is None:
        return None, None, ["not a model the search made (no hwnas.candidate): quantization only"]
    if calib.y is None or not separate_eval:
        why = (
            "pruning fine-tunes on the calibration data, so it needs labels there and a "
            "separate --eval set: quantization only"
        )
        return None, None, [why]
    try:
        net = from_onnx(data)
    except (SearchError, RuntimeError, ValueError) as exc:
        return None, None, [f"cannot rebuild the torch module ({exc}): quantization only"]
    assert evalset.y is not None
    return net, Split(calib.x, calib.y, evalset.x, evalset.y), []
