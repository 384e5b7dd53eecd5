"""fractalad-edge: FractalAD anomaly segmentation on edge devices.

The public API is deliberately small: load any exported model with
:class:`Predictor` and get an :class:`AnomalyResult` per frame. Importing the
package imports neither torch nor any runtime; they load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fractalad_edge.predictor import AnomalyResult, Predictor

__all__ = ["AnomalyResult", "Predictor", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy so `import fractalad_edge` stays cheap on an edge device and never pulls torch.
    if name in ("Predictor", "AnomalyResult"):
        from fractalad_edge import predictor

        return getattr(predictor, name)
    msg = f"module 'fractalad_edge' has no attribute {name!r}"
    raise AttributeError(msg)
