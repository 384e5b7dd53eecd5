"""Random binary fractals from iterated function systems (IFS), for anomaly shapes.

FractalAD shapes every synthetic anomaly with a random fractal: a 2-map IFS is sampled, the
chaos game traces its attractor, and the points are stamped into a binary image.

IFS sampling follows the "sigma factor" scheme of Anderson & Farrell, *Improving Fractal
Pre-training* (WACV 2022), which keeps random systems from collapsing to dust or filling into
blobs without FractalDB's rejection by filling rate. Each map is
``W = R(theta) diag(s1, s2) R(phi) D`` with random rotations ``R``, a random reflection
``D = diag(+-1, +-1)`` and singular values ``1 > s1 >= s2 >= 0``; the singular values of all
``N`` maps are drawn so that the weighted sum ``sum_k (s1_k + 2 * s2_k)`` equals a sigma factor
``alpha ~ U[(5 + N) / 2, (6 + N) / 2]`` (``[3.5, 4.0]`` for the 2 maps FractalAD uses). That is
the default of the paper's code (its ablation favoured sigma factors near 3.5); lower values
give sparse dust, higher values blobs. Translations are ``U[-1, 1]``. The chaos game picks map ``k`` with
probability proportional to ``|det W_k| = s1_k * s2_k``, so every map fills its share of the
attractor evenly.

Everything is numpy and vectorised: the chaos game runs ~1000 walkers in parallel (a Python
loop over ~100 steps, never over points), and rendering is a handful of scatter writes.
"""

from __future__ import annotations

import numpy as np

from fractalad_edge.errors import ConfigError, InvalidInputError

__all__ = [
    "DEFAULT_WALKERS",
    "chaos_game",
    "random_fractal_mask",
    "render_fractal",
    "sample_ifs",
    "sample_singular_values",
]

DEFAULT_WALKERS = 1000
"""Parallel chaos-game walkers: enough that the per-step Python overhead is negligible."""

DEFAULT_BURN_IN = 20
"""Steps discarded per walker; walkers start on the attractor, this only decorrelates them."""


def sample_singular_values(rng: np.random.Generator, n_maps: int, sigma_factor: float) -> np.ndarray:
    """Singular values ``(n_maps, 2)`` in ``[0, 1]``, ``s1 >= s2``, with ``sum(s1 + 2 s2) = sigma_factor``.

    Drawn map by map, each value uniform inside the interval that still lets the remaining maps
    reach the target sum (each map contributes at most 3), so the constraint holds exactly.
    """
    if n_maps < 1:
        msg = f"n_maps must be >= 1, got {n_maps}."
        raise ConfigError(msg)
    if not 0.0 < sigma_factor <= 3.0 * n_maps:
        msg = f"sigma_factor must be in (0, {3.0 * n_maps}] for {n_maps} maps (each adds at most 3), got {sigma_factor}."
        raise ConfigError(msg)
    out = np.empty((n_maps, 2), dtype=np.float64)
    low = sigma_factor - 3.0 * (n_maps - 1)  # what this and later maps must still add, at least
    high = sigma_factor  # ... and at most
    for k in range(n_maps - 1):
        s1 = rng.uniform(max(0.0, low / 3.0), min(1.0, high))
        low -= s1
        high -= s1
        s2 = rng.uniform(max(0.0, low / 2.0), min(s1, high / 2.0))
        low = low - 2.0 * s2 + 3.0
        high -= 2.0 * s2
        out[k] = (s1, s2)
    s2 = rng.uniform(max(0.0, (high - 1.0) / 2.0), high / 3.0)
    out[-1] = (high - 2.0 * s2, s2)
    return out


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def sample_ifs(
    rng: np.random.Generator,
    n_maps: int = 2,
    *,
    sigma_factor_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a contractive IFS: linear parts ``A`` ``(n, 2, 2)`` and translations ``b`` ``(n, 2)``.

    ``sigma_factor_range`` defaults to ``((5 + n) / 2, (6 + n) / 2)``; see the module docstring.
    """
    if n_maps < 1:
        msg = f"n_maps must be >= 1, got {n_maps}; FractalAD uses 2."
        raise ConfigError(msg)
    lo, hi = sigma_factor_range if sigma_factor_range is not None else ((5 + n_maps) / 2, (6 + n_maps) / 2)
    if not 0.0 < lo <= hi <= 3.0 * n_maps:
        msg = (
            f"sigma_factor_range must satisfy 0 < low <= high <= {3.0 * n_maps} for {n_maps} maps, "
            f"got {sigma_factor_range}; leave it None for the default ((5 + n) / 2, (6 + n) / 2)."
        )
        raise ConfigError(msg)
    svs = sample_singular_values(rng, n_maps, float(rng.uniform(lo, hi)))
    A = np.empty((n_maps, 2, 2), dtype=np.float64)
    for k in range(n_maps):
        theta, phi = rng.uniform(0.0, 2.0 * np.pi, size=2)
        reflection = np.diag(rng.choice(np.array([-1.0, 1.0]), size=2))
        A[k] = _rotation(theta) @ np.diag(svs[k]) @ _rotation(phi) @ reflection
    b = rng.uniform(-1.0, 1.0, size=(n_maps, 2))
    return A, b


def _check_ifs(A: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if A.ndim != 3 or A.shape[1:] != (2, 2) or b.shape != (A.shape[0], 2) or A.shape[0] < 1:
        msg = f"an IFS needs A of shape (n, 2, 2) and b of shape (n, 2) with n >= 1, got A {A.shape} and b {b.shape}."
        raise InvalidInputError(msg)
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        msg = "the IFS has non-finite coefficients; sample it with sample_ifs()."
        raise InvalidInputError(msg)
    return A, b


def chaos_game(
    A: np.ndarray,
    b: np.ndarray,
    n_points: int,
    rng: np.random.Generator,
    *,
    n_walkers: int = DEFAULT_WALKERS,
    burn_in: int = DEFAULT_BURN_IN,
) -> np.ndarray:
    """Trace the IFS attractor: ``(n_points, 2)`` float64 points.

    Many walkers run in parallel, each picking map ``k`` with probability ``|det A_k|`` (uniform
    if every map is singular). Walkers start at the fixed point of the most probable map,
    which lies on the attractor, and their first ``burn_in`` steps are discarded so they
    spread out before points are kept.
    """
    A, b = _check_ifs(A, b)
    if n_points < 1 or n_walkers < 1 or burn_in < 0:
        msg = f"chaos_game needs n_points >= 1, n_walkers >= 1, burn_in >= 0, got {n_points}, {n_walkers}, {burn_in}."
        raise ConfigError(msg)
    n_walkers = min(n_walkers, n_points)
    dets = np.abs(np.linalg.det(A))
    total = dets.sum()
    probs = dets / total if total > 1e-12 else np.full(len(dets), 1.0 / len(dets))
    steps = -(-n_points // n_walkers)

    # Inverse-CDF map choice per step and walker, kept as boolean planes "u >= edge_k":
    # walker w takes map k at step t iff planes 1..k are set and k+1.. are not. Each step
    # applies every map to every walker (one small batched matmul) and selects per walker;
    # with 2 maps that is cheaper than gathering per-walker coefficients, and it allocates
    # almost nothing (fresh large allocations cost page faults on every call).
    u = rng.random((burn_in + steps, n_walkers))
    planes = [u >= edge for edge in np.cumsum(probs)[:-1]]
    translation = b[:, :, None]

    start_map = int(np.argmax(probs))
    try:
        start = np.linalg.solve(np.eye(2) - A[start_map], b[start_map])
    except np.linalg.LinAlgError:
        start = np.zeros(2)
    xy = np.repeat(start[:, None], n_walkers, axis=1)
    out = np.empty((2, steps, n_walkers), dtype=np.float64)
    for t in range(burn_in + steps):
        images = A @ xy  # (n_maps, 2, walkers)
        images += translation
        xy = images[0]
        for k, plane in enumerate(planes, start=1):
            xy = np.where(plane[t], images[k], xy)
        if t >= burn_in:
            out[:, t - burn_in] = xy
    # Column-major (n, 2) view: each coordinate is contiguous, which the renderer's
    # per-axis arithmetic needs to be fast.
    return out.reshape(2, -1)[:, :n_points].T


# Offsets of the 3x3 neighbourhood, in the order of the bits of a stamp code.
_STAMP_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def render_fractal(points: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Rasterise points into a ``(size, size)`` bool image.

    The point cloud is scaled to fill the square with its aspect ratio kept (elongated
    attractors stay elongated, as scratches do) and centred; each point then stamps a
    uniformly random subset of its 3x3 neighbourhood, which gives the masks their ragged,
    grainy texture instead of a hard-edged blob.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        msg = f"points must have shape (n, 2), got {points.shape}."
        raise InvalidInputError(msg)
    if size < 1:
        msg = f"size must be >= 1 pixel, got {size}."
        raise ConfigError(msg)
    xs = np.ascontiguousarray(points[:, 0])
    ys = np.ascontiguousarray(points[:, 1])
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        keep = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[keep], ys[keep]
    width = size + 2  # a 1-pixel border absorbs the stamps that leave the square
    canvas = np.zeros(width * width, dtype=bool)
    if len(xs):
        lo = np.array([xs.min(), ys.min()])
        extent = np.array([xs.max(), ys.max()]) - lo
        scale = (size - 1) / max(float(extent.max()), 1e-12)
        shift = (size - 1 - extent * scale) / 2.0 + 1.5 - lo * scale  # centre, border, round
        cols = (xs * scale + shift[0]).astype(np.intp)
        rows = (ys * scale + shift[1]).astype(np.intp)
        np.clip(cols, 1, size, out=cols)
        np.clip(rows, 1, size, out=rows)
        # Points stamp independent uniform subsets, so a pixel hit c times stamps each
        # neighbour with probability 1 - 2**-c: sampling that per hit pixel is the same
        # distribution as sampling per point, and much cheaper when points pile up. Random
        # bytes against 256 - 2**(8 - c) give that probability exactly for c <= 8; pixels
        # hit more often always stamp (instead of with probability > 0.998).
        counts = np.bincount(rows * width + cols, minlength=width * width)
        hit = np.flatnonzero(counts)
        hits = np.minimum(counts[hit], 9)
        threshold = np.where(hits > 8, 256, 256 - np.left_shift(1, 8 - np.minimum(hits, 8))).astype(np.int16)
        stamped = rng.integers(0, 256, size=(len(_STAMP_OFFSETS), len(hit)), dtype=np.uint8) < threshold
        for k, (dy, dx) in enumerate(_STAMP_OFFSETS):
            canvas[hit[stamped[k]] + (dy * width + dx)] = True
    return canvas.reshape(width, width)[1:-1, 1:-1].copy()


def random_fractal_mask(
    size: int,
    rng: np.random.Generator,
    n_points: int = 100_000,
    *,
    min_fill: float = 0.02,
    max_tries: int = 5,
) -> np.ndarray:
    """A random fractal as a ``(size, size)`` bool mask.

    Some IFS draws are degenerate (the attractor collapses to a line or a few dots) and would
    give a nearly empty anomaly; those with fewer than ``min_fill`` of the pixels set are
    redrawn, up to ``max_tries`` times, keeping the fullest draw if none passes.
    """
    if size < 1:
        msg = f"size must be >= 1 pixel, got {size}."
        raise ConfigError(msg)
    if n_points < 1 or max_tries < 1 or not 0.0 <= min_fill < 1.0:
        msg = f"need n_points >= 1, max_tries >= 1 and 0 <= min_fill < 1, got {n_points}, {max_tries}, {min_fill}."
        raise ConfigError(msg)
    best = np.zeros((size, size), dtype=bool)
    best_fill = -1.0
    for _ in range(max_tries):
        A, b = sample_ifs(rng, 2)
        mask = render_fractal(chaos_game(A, b, n_points, rng), size, rng)
        fill = float(mask.mean())
        if fill >= min_fill:
            return mask
        if fill > best_fill:
            best, best_fill = mask, fill
    return best
