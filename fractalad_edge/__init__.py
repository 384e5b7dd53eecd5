"""fractalad-edge: FractalAD anomaly segmentation on edge devices.

The public API is deliberately small: load any exported model with
:class:`Predictor` and get an :class:`AnomalyResult` per frame. Importing the
package imports neither torch nor any runtime; they load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fractalad_edge._lazy import lazy_exports as _lazy_exports  # private: the public API is __all__

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fractalad_edge.predictor import AnomalyResult, Predictor

__all__ = ["AnomalyResult", "Predictor", "__version__"]


# Lazy so `import fractalad_edge` stays cheap on an edge device and never pulls torch.
__getattr__, __dir__ = _lazy_exports(__name__, {"Predictor": "fractalad_edge.predictor", "AnomalyResult": "fractalad_edge.predictor"})
