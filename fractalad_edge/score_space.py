"""The space a model's anomaly map is in, and which spaces each method may score in (torch- and numpy-free).

The exported graph's output is the map thresholds are fitted on, so its space decides how
well decisions survive a change of runtime or precision:

* ``sigmoid``: probabilities in [0, 1], ``sigmoid(head logits)``. What every ``fractalad``
  model wrote before the field existed. Trained heads put normal pixels at logits of 10-20,
  so image thresholds sat at ~0.99999 (docs/experiments/runtimes-bottle.md, gpu-h200.md):
  a float32 sigmoid steps by 6e-8 there (fp16 and bf16 cannot hold 0.99999 at all), and
  runtime-level differences flipped decisions.
* ``logit``: the head's logits themselves, no sigmoid in the graph. Unbounded, keeps its
  spread; the default for new ``fractalad`` runs and exports
  (docs/experiments/score-space.md). Uncalibrated, the decision is at logit 0 (sigmoid 0.5).
* ``distance``: nearest-neighbour distances of the ``memory`` method (>= 0).
* ``fused``: the ``fused`` method's map, each branch normalised on held-out normals
  (0 at their median, 1 at their upper tail) and combined (models/memory.py ``fuse_maps``).

Recorded in ``metadata.json`` as ``score.space`` (schema version 4); a file without it is
read in its method's :data:`LEGACY_SPACES` entry, i.e. exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

from fractalad_edge.errors import ConfigError, parse_enum
from fractalad_edge.method import Method

__all__ = ["LEGACY_SPACES", "METHOD_SCORE_SPACES", "ScoreSpace", "check_space", "default_space", "parse_space"]


class ScoreSpace(str, Enum):
    """What the values of a model's anomaly map are (see the module docstring)."""

    SIGMOID = "sigmoid"
    LOGIT = "logit"
    DISTANCE = "distance"
    FUSED = "fused"

    @property
    def bounded(self) -> bool:
        """Whether the map lies in [0, 1] (only the sigmoid's does)."""
        return self is ScoreSpace.SIGMOID


#: the spaces each method's graph can output; the first is the default for new runs and exports
METHOD_SCORE_SPACES: Mapping[Method, tuple[ScoreSpace, ...]] = MappingProxyType(
    {
        Method.FRACTALAD: (ScoreSpace.LOGIT, ScoreSpace.SIGMOID),
        Method.MEMORY: (ScoreSpace.DISTANCE,),
        Method.FUSED: (ScoreSpace.FUSED,),
    }
)

#: what an artifact without ``score.space`` (schema version <= 3) scores in
LEGACY_SPACES: Mapping[Method, ScoreSpace] = MappingProxyType(
    {Method.FRACTALAD: ScoreSpace.SIGMOID, Method.MEMORY: ScoreSpace.DISTANCE, Method.FUSED: ScoreSpace.FUSED}
)


def parse_space(value: object) -> ScoreSpace:
    """A :class:`ScoreSpace` from its name; a ConfigError naming the allowed ones otherwise."""
    return parse_enum(ScoreSpace, value, "score space")


def default_space(method: Method) -> ScoreSpace:
    """The space new runs and exports of ``method`` score in."""
    return METHOD_SCORE_SPACES[method][0]


def check_space(method: Method, space: ScoreSpace) -> ScoreSpace:
    """``space`` if a ``method`` model can output it; a ConfigError that names the allowed ones otherwise."""
    allowed = METHOD_SCORE_SPACES[method]
    if space not in allowed:
        msg = (
            f"a {method.value!r} model cannot score in the {space.value!r} space; it scores in "
            f"{', '.join(repr(s.value) for s in allowed)}"
        )
        raise ConfigError(msg)
    return space
