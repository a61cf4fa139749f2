"""Which stages of the face tower a fine-tune leaves fixed: the ``--freeze`` spec, parsed and applied.

The stages of `twinstream.model.face_resnet.FaceResNet`, input side first, are the stem (7×7 conv and
its affine), the five residual levels named by their filter count (``level32`` … ``level128``, then the
two 256-filter levels ``level256a`` and ``level256b``) and the final ``fc``. A spec is

* ``none``: every stage trains;
* ``levels:N``: the stem and the first N residual levels stay fixed (``levels:4``, the default, trains
  only ``level256b`` and ``fc``; ``levels:5`` only ``fc``);
* a comma-separated list of stage names, e.g. ``stem,level32,level64``.

A frozen stage's parameters (convolution weights and biases, and the affine layers that stand in for
batch norm, so there are no running statistics to drift) get ``requires_grad = False``: autograd records
nothing for them, the optimiser never sees them, and they stay bit-identical. This module imports no
torch at run time, so `training.config` can validate specs cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

NONE = "none"
LEVELS_PREFIX = "levels:"
#: FaceResNet's stages, input side first (the residual levels follow ``face_resnet.LEVELS``).
STAGES: tuple[str, ...] = ("stem", "level32", "level64", "level128", "level256a", "level256b", "fc")
RESIDUAL_LEVELS = STAGES[1:-1]
#: The default for a pretrained face tower: everything but the last 256-filter level and the fc.
DEFAULT_FACE_FREEZE = "levels:4"


class FreezeError(ValueError):
    """A ``--freeze`` spec that names no known stage layout, or freezes every stage."""


@dataclass(frozen=True, slots=True)
class FreezeSpec:
    """The frozen stages, in network order (empty: nothing frozen)."""

    stages: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FreezeSpec:
        """Parse ``none`` | ``levels:N`` | ``stage,stage,…`` (see the module docstring).

        Raises:
            FreezeError: Unknown stage, N out of range, or every stage frozen (nothing would train).
        """
        spec = text.strip().lower()
        if spec == NONE:
            return cls(())
        if spec.startswith(LEVELS_PREFIX):
            count = spec.removeprefix(LEVELS_PREFIX)
            if not count.isdigit() or int(count) > len(RESIDUAL_LEVELS):
                raise FreezeError(f"levels:N takes N in 0..{len(RESIDUAL_LEVELS)}, got {text!r}")
            return cls(STAGES[: 1 + int(count)])
        named = {name.strip() for name in spec.split(",") if name.strip()}
        unknown = named - set(STAGES)
        if unknown or not named:
            raise FreezeError(f"unknown stages {sorted(unknown) or text!r}: use none, levels:N or {STAGES}")
        if named == set(STAGES):
            raise FreezeError("freezing every stage leaves nothing to train")
        return cls(tuple(s for s in STAGES if s in named))

    def __str__(self) -> str:
        return ",".join(self.stages) or NONE


def stage_of(parameter: str) -> str:
    """The stage a FaceResNet parameter name (``blocks.13.conv1.weight``, ``fc.weight``…) belongs to."""
    from twinstream.model.face_resnet import LEVELS

    head = parameter.split(".", 1)[0]
    if head in ("stem_conv", "stem_affine"):
        return "stem"
    if head == "fc":
        return "fc"
    if head != "blocks":
        raise FreezeError(f"{parameter!r} is not a FaceResNet parameter")
    block, first = int(parameter.split(".")[1]), 0
    for name, (_, count, _) in zip(RESIDUAL_LEVELS, LEVELS, strict=True):
        if block < first + count:
            return name
        first += count
    raise FreezeError(f"{parameter!r}: FaceResNet has {first} residual blocks")


def freeze_stages(tower: nn.Module, spec: FreezeSpec) -> tuple[str, ...]:
    """Turn gradients off for the parameters of ``spec``'s stages (on for the rest); returns those frozen.

    Raises:
        FreezeError: ``spec`` freezes something but ``tower`` is not a FaceResNet.
    """
    from twinstream.model.face_resnet import FaceResNet

    module = getattr(tower, "module", tower)
    if not isinstance(module, FaceResNet):
        if spec.stages:
            raise FreezeError(f"stages can be frozen in a FaceResNet only, not a {type(module).__name__}")
        return ()
    frozen = []
    for name, parameter in module.named_parameters():
        keep = stage_of(name) in spec.stages
        parameter.requires_grad_(not keep)
        if keep:
            frozen.append(name)
    return tuple(frozen)
