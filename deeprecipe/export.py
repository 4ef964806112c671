"""Export a trained run: to ONNX or TorchScript (checking the exported model gives the same outputs),
or as one stage's features of every image of a data spec.

The exported model takes normalised float input (N, C, H, W) like the PyTorch model; the run's
mean/std and classes are written beside it in `<name>.json` so other runtimes can preprocess.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.sources import load_source
from .errors import DeepRecipeError
from .loaded import load_run
from .progress import track
from .session import prepare_data
from .train.transfer import extract_features
from .utils import atomic_write_bytes, write_json

FORMATS = ("onnx", "torchscript")
PARITY_TOLERANCE = 1e-4


def sample_inputs(loaded, n: int = 8) -> torch.Tensor:
    """Real test images when the run's data is at hand, random images otherwise (same shape either way)."""
    try:
        data = prepare_data(loaded.cfg)
        images, _ = data.part("test" if len(data.splits["test"]) else "val")
        images = images[:n]
    except DeepRecipeError:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, *loaded.input_shape), generator=g, dtype=torch.uint8)
    return loaded.normalize(images).float().cpu()


def _export_torchscript(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():  # torch.jit is deprecated upstream but still the portable TorchScript format
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model, x).save(str(path))


def _run_torchscript(path: Path, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path)).eval()(x).float().numpy()


def _export_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise DeepRecipeError("ONNX export needs the onnx package", "pip install 'deeprecipe[onnx]'") from None
    # The TorchScript-based exporter: the torch.export one needs onnxscript, another dependency.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (x,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray | None:
    try:
        import onnxruntime
    except ImportError:
        return None  # exported, but nothing here can run it: parity is reported as unchecked
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


def export_run(run: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> dict[str, Any]:
    """Write the run's best model as FORMAT; returns path, parity max |Δ| and whether it passed."""
    if fmt not in FORMATS:
        raise DeepRecipeError(f"--format {fmt!r} is not supported", f"choose one of {', '.join(FORMATS)}")
    loaded = load_run(run, device="cpu")
    model = loaded.model.float().eval()
    x = sample_inputs(loaded)
    path = Path(out) if out else Path(run) / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = model(x).float().numpy()
        if fmt == "onnx":
            _export_onnx(model, x, path)
        else:
            _export_torchscript(model, x, path)
    got = _run_onnx(path, x) if fmt == "onnx" else _run_torchscript(path, x)
    max_diff = float(np.abs(got - expected).max()) if got is not None else None
    write_json(path.with_suffix(".json"), {"format": fmt, "classes": loaded.classes, "mean": loaded.mean,
                                           "std": loaded.std, "input_shape": list(loaded.input_shape),
                                           "input": "float (N,C,H,W) = (pixels/255 - mean) / std"})
    result = {"path": str(path), "format": fmt, "samples": int(x.shape[0]), "max_abs_diff": max_diff,
              "parity": None if max_diff is None else max_diff <= PARITY_TOLERANCE}
    if result["parity"] is False:
        raise DeepRecipeError(f"exported {fmt} model differs from PyTorch by {max_diff:.2e} (> {PARITY_TOLERANCE:g})",
                              "try the other --format, or report the model name")
    return result


def describe(result: dict[str, Any]) -> str:
    parity = ("parity not checked (pip install onnxruntime)" if result["parity"] is None
              else f"parity ok on {result['samples']} samples, max |Δ| {result['max_abs_diff']:.2e}")
    return f"wrote {result['path']} ({result['format']}); {parity}"


def features_to_npz(run: str | Path, stage: str, data: str, out: str | Path, batch_size: int = 256) -> dict:
    """Embed every image of a data spec with a trained run's stage; write features, labels, classes to npz."""
    loaded = load_run(run)
    ds = load_source(data)
    starts = range(0, len(ds), batch_size)
    batches = (loaded.normalize(ds.images[i:i + batch_size]) for i in track(starts, f"features {stage}", len(starts)))
    feats = extract_features(loaded.model, stage, batches)
    buf = io.BytesIO()
    np.savez_compressed(buf, features=feats.numpy().astype(np.float32), labels=ds.labels.numpy(),
                        classes=np.array(ds.classes, dtype=str))
    atomic_write_bytes(out, buf.getvalue())
    return {"out": str(out), "n": int(feats.shape[0]), "dim": int(feats.shape[1]) if feats.ndim == 2 else 0,
            "stage": stage, "data": data}
