"""Engine cache: exported / compiled inference engines on disk, keyed by everything they depend on.

An engine (ONNX model bytes, serialised TensorRT engine) is only valid for the exact
weights, code, library versions, GPU, precision, input shapes and sampler settings it was
built from. :class:`EngineKey` holds all of them; its SHA-256 over a canonical JSON form
names the entry. The cache root (:func:`default_cache_dir`) is ``<model_dir>/engines/``
for a model in a writable working directory; for a model installed read-only (under an
installed ``share/genpolicy_ros/``, or without write permission) it is the user cache
``$XDG_CACHE_HOME/genpolicy_ros/engines/<model hash>/`` (``~/.cache`` without
``XDG_CACHE_HOME``). Layout under the root::

    <digest>.<ext>    engine bytes (written to a temp file, then renamed: atomic)
    <digest>.json     manifest: the key in clear, file name, size, sha256 of the bytes

Loading re-hashes the bytes and compares them with the manifest; a missing, truncated or
tampered entry is deleted and reported as a miss, so the caller rebuilds it. Nothing is
ever unpickled: entries are opaque bytes handed to ONNX Runtime / TensorRT parsers.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

LOG = logging.getLogger("genpolicy_ros.runtime.backends.cache")

#: Bump when the way engines are exported changes (invalidates every cached engine).
EXPORT_FORMAT = 2

#: Packages whose code an engine bakes in: the policy (network, sampler, normalisers) and
#: the unrolled sampler + export/build code of the backends.
CODE_PACKAGES = ("genpolicy_ros.core", "genpolicy_ros.runtime.backends")


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over the state dict: names, dtypes, shapes and raw bytes, in sorted order."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def code_digest(packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """SHA-256 over every ``.py`` file of ``packages`` (the network/sampler code and the
    export code an engine bakes in), walked in sorted order; a code change invalidates
    engines even when the weights did not change. Computed once per process."""
    import importlib.util

    h = hashlib.sha256()
    for package in packages:
        spec = importlib.util.find_spec(package)
        roots = list(spec.submodule_search_locations or []) if spec is not None else []
        h.update(package.encode())
        for root in roots:
            for path in sorted(Path(root).rglob("*.py")):
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def library_version(lib: str) -> str:
    """Version of the library importable as ``lib``, without importing it when the package
    metadata knows it (importing ``onnx`` alone costs ~0.5 s); ``"missing"`` if absent."""
    import importlib.metadata
    import importlib.util

    mod = sys.modules.get(lib)
    if mod is not None and getattr(mod, "__version__", None):
        return str(mod.__version__)
    if importlib.util.find_spec(lib) is None:
        return "missing"
    for dist in (lib, lib.replace("_", "-"), f"{lib}-gpu", f"{lib.replace('_', '-')}-cu12", f"{lib}-cu13"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        return str(getattr(__import__(lib), "__version__", "unknown"))
    except ImportError:
        return "missing"


def library_versions(*extra: str) -> dict:
    """Versions of torch, python and the named libraries (``"missing"`` when absent)."""
    versions = {"torch": torch.__version__, "python": sys.version.split()[0], "export_format": EXPORT_FORMAT}
    for lib in extra:
        versions[lib] = library_version(lib)
    return versions


def device_name(device: str) -> str:
    """Human name of the compute device (GPU model for CUDA; "cpu" otherwise)."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        dev = torch.device(device)
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        cap = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)} (sm_{cap[0]}{cap[1]})"
    return "cpu"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. ``digest`` names the cache entry."""

    backend: str
    weights_sha256: str
    code_sha256: str
    device: str
    versions: dict
    precision: str
    shapes: dict  # input name -> shape list
    sampler: dict  # resolved sampler settings (sampler, num_steps, eta, guidance_scale)
    extra: dict = field(default_factory=dict)  # backend options (threads, mode, ...)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), sort_keys=True, default=list))

    @property
    def digest(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


MODEL_FILES = ("config.json", "model.safetensors")


def model_digest(model_dir: str | os.PathLike) -> str:
    """First 16 hex digits of the SHA-256 over the model's ``config.json`` and weights file
    (names the per-model folder of the user cache)."""
    h = hashlib.sha256()
    for name in MODEL_FILES:
        path = Path(model_dir) / name
        h.update(name.encode())
        if path.is_file():
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def is_installed_model(model_dir: str | os.PathLike) -> bool:
    """True for a model directory that must not be written into: inside an installed
    ``share/genpolicy_ros/`` (colcon / pip data files) or not writable by this user."""
    path = Path(model_dir).resolve()
    parts = path.parts
    if any(a == "share" and b == "genpolicy_ros" for a, b in zip(parts, parts[1:])):
        return True
    return not os.access(path, os.W_OK)


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/genpolicy_ros/engines`` (``~/.cache/...`` without the variable)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "genpolicy_ros" / "engines"


def default_cache_dir(model_dir: str | os.PathLike | None) -> Path:
    """Where the engines of ``model_dir`` live (see the module docstring)."""
    if model_dir is None:
        return user_cache_root() / "shared"
    if not is_installed_model(model_dir):
        engines = Path(model_dir) / "engines"
        try:
            engines.mkdir(parents=True, exist_ok=True)
            if os.access(engines, os.W_OK):
                return engines
        except OSError:
            pass
    return user_cache_root() / model_digest(model_dir)


class EngineCache:
    """Directory of engines with per-entry JSON manifests (see module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _paths(self, key: EngineKey, ext: str) -> tuple[Path, Path]:
        d = key.digest
        return self.root / f"{d}.{ext}", self.root / f"{d}.json"

    def load(self, key: EngineKey, ext: str) -> bytes | None:
        """The engine bytes for ``key``, or None (missing, or corrupt → deleted)."""
        data_path, manifest_path = self._paths(key, ext)
        if not data_path.exists() and not manifest_path.exists():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            data = data_path.read_bytes()
            if manifest.get("key") != key.as_dict():
                raise ValueError("manifest key does not match")
            if manifest.get("size") != len(data) or manifest.get("sha256") != hashlib.sha256(data).hexdigest():
                raise ValueError("engine bytes do not match the manifest hash")
            return data
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            LOG.warning("engine cache entry %s is corrupt (%s); rebuilding", data_path.name, exc)
            self.remove(key, ext)
            return None

    def store(self, key: EngineKey, ext: str, data: bytes) -> Path:
        """Write ``data`` for ``key`` atomically; returns the engine path."""
        self.root.mkdir(parents=True, exist_ok=True)
        data_path, manifest_path = self._paths(key, ext)
        manifest = {"key": key.as_dict(), "file": data_path.name, "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), "created_unix": time.time()}
        _atomic_write(data_path, data)
        _atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
        return data_path

    def remove(self, key: EngineKey, ext: str) -> None:
        for path in self._paths(key, ext):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def entries(self) -> list[dict]:
        """Manifests of all readable entries (for ``genpolicy export`` listings)."""
        out = []
        for path in sorted(self.root.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
