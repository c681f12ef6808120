"""Which calibration goes with which reader: the weights checksum a calibration is tied to, the check that it was
fitted for the way this service reads, and the plain one used only to fit a new one."""

from __future__ import annotations

import logging
from pathlib import Path

from rag.decide import Calibrator
from rag.errors import ModelError

log = logging.getLogger(__name__)


def check_calibration_fits(calibrator: Calibrator, path: Path, reader_kind: str, read_k: int, backend: str) -> None:
    """A calibration is fitted for a number of passages read (its features, such as agreement across passages and
    the shared normalisation's log-probabilities, depend on it): refuse another ``read_k``. Another runtime of the
    same weights (fp32 against int8) moves scores by little: say so in the log, do not refuse."""
    fitted = calibrator.fitted_on
    if "read_k" in fitted and fitted["read_k"] != read_k:
        raise ModelError(
            f"calibration {path} was fitted for {fitted['read_k']} passages read, this service reads {read_k} "
            f"(RAG_READ_K); refit it with: RAG_READ_K={read_k} rag fit-calibration --reader {reader_kind}, "
            f"or set RAG_READ_K={fitted['read_k']}"
        )
    if reader_kind == "trained" and fitted.get("reader_backend") not in (None, backend):
        log.warning(
            "calibration %s was fitted on the %s runtime, the reader runs on %s: scores may differ slightly "
            "(refit with RAG_READER_BACKEND=%s rag fit-calibration)",
            path,
            fitted["reader_backend"],
            backend,
            backend,
        )


def default_calibrator(reader_kind: str) -> Calibrator:
    """Only to fit a calibration (``calibrated=False``): a plain sigmoid of the margin (trained) or of the
    heuristic score. The service never runs on it: a missing calibration is an error."""
    from rag.decide import FEATURES, Logistic

    weights = [0.0] * len(FEATURES)
    bias = 0.0
    if reader_kind == "trained":
        weights[FEATURES.index("margin")] = 1.0
    else:
        weights[FEATURES.index("span_score")], bias = 8.0, -3.0
    plain = Logistic(mean=[0.0] * len(FEATURES), scale=[1.0] * len(FEATURES), weights=weights, bias=bias)
    return Calibrator(ranker=plain, threshold=0.5)


def reader_weights_sha256(reader_kind: str, folder: Path) -> str | None:
    """The checksum a calibration is tied to: the trained reader's weights (None for the heuristic reader)."""
    if reader_kind != "trained":
        return None
    from rag.checksums import sha256_file

    return sha256_file(folder / "model.safetensors")
