"""SS2D scan backends behind one name-based selector.

Every backend computes exactly the function documented in `reference.py`;
`get_scan(name)` returns the callable, `available_backends()` lists what this
machine can run, and an unknown or unavailable name raises a clear error.
"""
from __future__ import annotations

from typing import Callable, Dict

from .reference import K_DIRECTIONS, ss2d_scan_sequential, ss2d_scan_vectorized

ScanFn = Callable[..., "torch.Tensor"]  # noqa: F821


class BackendUnavailable(RuntimeError):
    """Raised when a named SS2D backend cannot run on this machine."""


def _load_reference() -> ScanFn:
    return ss2d_scan_vectorized


def _load_sequential() -> ScanFn:
    return ss2d_scan_sequential


# name -> (loader, one-line description). Loaders raise BackendUnavailable.
_LOADERS: Dict[str, tuple] = {
    "reference": (_load_reference, "pure PyTorch, vectorized over sequences (CPU or GPU)"),
    "sequential": (_load_sequential, "pure PyTorch, per-step loop; test oracle only"),
}


def register_backend(name: str, loader: Callable[[], ScanFn], description: str) -> None:
    """Add a backend; used by the optional GPU / export backends."""
    _LOADERS[name] = (loader, description)


def _register_optional() -> None:
    # Optional backends register themselves if their modules exist; a missing
    # module only means the backend was not built into this install.
    import importlib

    for mod in ("triton_backend", "mamba_backend", "export"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on install
            if exc.name != f"{__name__}.{mod}":
                raise


def backend_names() -> list:
    return sorted(_LOADERS)


def get_scan(name: str) -> ScanFn:
    """Return the scan function for `name` or raise with the reason it cannot run."""
    if name == "auto":
        from .auto import pick_auto  # noqa: WPS433 (lazy: needs torch.cuda)

        name = pick_auto()
    if name not in _LOADERS:
        raise ValueError(
            f"unknown SS2D backend {name!r}; choose one of: auto, {', '.join(backend_names())}"
        )
    loader, _ = _LOADERS[name]
    return loader()


def available_backends() -> Dict[str, str]:
    """name -> 'ok' or the reason it is unavailable."""
    status = {}
    for name, (loader, _) in sorted(_LOADERS.items()):
        try:
            loader()
            status[name] = "ok"
        except BackendUnavailable as exc:
            status[name] = f"unavailable: {exc}"
    return status


_register_optional()

__all__ = [
    "K_DIRECTIONS",
    "BackendUnavailable",
    "available_backends",
    "backend_names",
    "get_scan",
    "register_backend",
    "ss2d_scan_sequential",
    "ss2d_scan_vectorized",
]
