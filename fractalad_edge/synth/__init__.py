"""Synthetic anomalies for training on normal images only (numpy and OpenCV, no torch).

:class:`FractalAnomalyGenerator` turns a normal image into an :class:`AnomalySample`
(clean image, augmented image, mask) as the paper's fractal anomaly generation (arXiv 2301.12739) describes;
:mod:`.fractal` holds the IFS fractals, :mod:`.jitter` a torchvision-style colour jitter and
:mod:`.preview` a PNG contact sheet to look at the result. No torch here: calibration and
export use the generator where torch may be absent.
"""

from __future__ import annotations

from fractalad_edge.synth.anomaly import AnomalySample, FractalAnomalyGenerator, SynthConfig
from fractalad_edge.synth.fractal import chaos_game, random_fractal_mask, render_fractal, sample_ifs
from fractalad_edge.synth.jitter import ColorJitter, JitterParams, apply_jitter
from fractalad_edge.synth.preview import save_preview

__all__ = [
    "AnomalySample",
    "ColorJitter",
    "FractalAnomalyGenerator",
    "JitterParams",
    "SynthConfig",
    "apply_jitter",
    "chaos_game",
    "random_fractal_mask",
    "render_fractal",
    "sample_ifs",
    "save_preview",
]
