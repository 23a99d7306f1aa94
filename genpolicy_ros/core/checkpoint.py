"""Model directory I/O: ``config.json`` + ``model.safetensors``; loading never unpickles.

Layout of a model directory::

    config.json        PolicyConfig.to_dict() (format_version, specs, horizons, sampler
                       defaults, network) plus "weights": {"file", "sha256", "bytes"},
                       "created_by" and an optional "metadata" object
    model.safetensors  every tensor of the policy's state dict (weights, the learned
                       null condition, normaliser statistics). The trainer passes its
                       EMA model, so the EMA weights are what is saved.

``load_model_dir`` reads the weights file once into memory, checks its safetensors
header structurally (a truncated file is named as such), compares its sha256 with the
one recorded in ``config.json`` and only then decodes the tensors with ``safetensors``
(a flat binary format: no code can run). Tensor names and shapes are compared with the
model that the config builds before anything is copied. Every failure raises
:class:`ModelLoadError` naming the file and the problem.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Mapping

from safetensors.torch import load as _safetensors_load
from safetensors.torch import save as _safetensors_save

from .config import FORMAT_VERSION
from .model_dir import (  # noqa: F401
    CONFIG_FILE,
    WEIGHTS_FILE,
    IncompatibleModelError,
    ModelLoadError,
    check_compatible,
    read_model_config,
)

CREATED_BY = "genpolicy_ros 0.1.0"
_MAX_HEADER_BYTES = 100 * 1024 * 1024


# --------------------------------------------------------------------------- save
def save_model_dir(policy, path, extra_metadata: Mapping | None = None) -> Path:
    """Write ``policy`` (a GenerativePolicy; pass the EMA model) to the directory ``path``.

    Returns the directory path. The weights file is written first, config.json (which
    records its sha256) last, each through a temporary file and an atomic rename.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in policy.state_dict().items()}
    blob = _safetensors_save(tensors, metadata={"format": "pt", "format_version": str(FORMAT_VERSION)})
    _atomic_write(path / WEIGHTS_FILE, blob)

    doc = policy.config.to_dict()
    doc["weights"] = {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    doc["created_by"] = CREATED_BY
    if extra_metadata is not None:
        try:
            doc["metadata"] = json.loads(json.dumps(dict(extra_metadata), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"save_model_dir: extra_metadata must be JSON-serialisable ({exc})") from None
    _atomic_write(path / CONFIG_FILE, (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode())
    return path


def _atomic_write(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


# --------------------------------------------------------------------------- load
def load_model_dir(path, map_location="cpu"):
    """Load a model directory written by :func:`save_model_dir` -> GenerativePolicy (eval mode).

    Raises :class:`ModelLoadError` for a missing file, invalid JSON, unsupported
    ``format_version``, a truncated or non-safetensors weights file, a sha256 mismatch,
    missing/unexpected tensors or a shape mismatch.
    """
    from .policy import GenerativePolicy  # local import: policy imports the whole core

    path = Path(path)
    cfg, doc = read_model_config(path)
    weights_path = path / doc["weights"].get("file", WEIGHTS_FILE)
    if weights_path.name != str(doc["weights"].get("file", WEIGHTS_FILE)) or weights_path.parent != path:
        raise ModelLoadError(f"{path / CONFIG_FILE}: weights file must be a plain file name inside the directory")
    if not weights_path.is_file():
        raise ModelLoadError(f"{weights_path}: missing")
    blob = weights_path.read_bytes()
    _check_safetensors_structure(blob, weights_path)
    digest = hashlib.sha256(blob).hexdigest()
    if digest != doc["weights"]["sha256"]:
        raise ModelLoadError(f"{weights_path}: sha256 mismatch (file {digest}, config.json records "
                             f"{doc['weights']['sha256']}): the file was modified or corrupted")
    try:
        tensors = _safetensors_load(blob)
    except Exception as exc:  # safetensors raises its own error type
        raise ModelLoadError(f"{weights_path}: cannot decode safetensors data ({exc})") from None

    policy = GenerativePolicy.from_config(cfg)
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise ModelLoadError(f"{weights_path}: missing tensors {missing[:10]}"
                             f"{' ...' if len(missing) > 10 else ''} required by {CONFIG_FILE}")
    if unexpected:
        raise ModelLoadError(f"{weights_path}: unexpected tensors {unexpected[:10]}"
                             f"{' ...' if len(unexpected) > 10 else ''} not in the model built from {CONFIG_FILE}")
    for name, ref in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise ModelLoadError(f"{weights_path}: shape mismatch for {name!r}: file has {tuple(got.shape)}, "
                                 f"model built from {CONFIG_FILE} expects {tuple(ref.shape)}")
        if got.dtype != ref.dtype:
            raise ModelLoadError(f"{weights_path}: dtype mismatch for {name!r}: file has {got.dtype}, "
                                 f"model expects {ref.dtype}")
    try:
        policy.load_state_dict(tensors, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{weights_path}: {exc}") from None
    policy.eval()
    return policy.to(map_location)


def _check_safetensors_structure(blob: bytes, where: Path) -> None:
    """Validate the safetensors framing: u64 header length, JSON header, data extent."""
    try:
        _check_framing(blob, where)
    except ModelLoadError:
        # A valid file may begin with these bytes too, so the hint is given only on failure.
        if blob[:1] == b"\x80" or blob[:4] == b"PK\x03\x04":
            kind = "a pickle" if blob[:1] == b"\x80" else "a zip archive (torch.save format)"
            raise ModelLoadError(f"{where}: not a safetensors file: it looks like {kind}; pickled "
                                 "checkpoints are refused (loading never unpickles)") from None
        raise


def _check_framing(blob: bytes, where: Path) -> None:
    if len(blob) < 8:
        raise ModelLoadError(f"{where}: truncated or not a safetensors file ({len(blob)} bytes)")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > _MAX_HEADER_BYTES or 8 + header_len > len(blob):
        raise ModelLoadError(f"{where}: truncated or not a safetensors file (header declares {header_len} "
                             f"bytes, file has {len(blob)})")
    try:
        header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelLoadError(f"{where}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{where}: not a safetensors file (header is not a JSON object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ModelLoadError(f"{where}: not a safetensors file (bad entry for {name!r})")
        end = max(end, offsets[1])
    have = len(blob) - 8 - header_len
    if end > have:
        raise ModelLoadError(f"{where}: truncated: header declares {end} bytes of tensor data, file holds {have}")
    if end < have:
        raise ModelLoadError(f"{where}: {have - end} unexpected trailing bytes after the tensor data")


# --------------------------------------------------------------------------- compatibility
