"""Query augmentations: the ``q`` views of each record on which every model is queried.

Attacks that average a signal over several augmented views of a record are stronger than those
that query it once (Carlini et al., "Membership Inference Attacks From First Principles", S&P
2022, Sec. VI-B: 2 queries — the image and its mirror — or 18: mirror × shifts). Each registered
name gives a fixed, ordered list of views; a query list such as ``["identity", "mirror"]`` gives
their concatenation, so ``q`` is the total number of views.

=================  =====  =================================================================
name               views  what
=================  =====  =================================================================
``identity``       1      the record as is (any data)
``mirror``         1      horizontal mirror (images)
``shifts``         8      every shift by ``(dy, dx) ∈ {-1, 0, 1}² \\ {(0, 0)}`` (images)
``mirror-shifts``  9      the mirror, shifted by every ``(dy, dx) ∈ {-1, 0, 1}²`` (images)
``lira-18``        18     ``{image, mirror} × {-1, 0, 1}²`` in the order of the LiRA reference
                          code (``inference.py``: mirror outer, then row offset, then column)
=================  =====  =================================================================

Shifts pad the image by :data:`SHIFT_PIXELS` with *reflection* (as the LiRA reference code and
the ``pad-and-crop`` training augmentation do) and crop the window moved by ``(dy, dx)``:
``out[i, j] = reflect_pad(x)[i + p + dy, j + p + dx]``.

Images are channels-first ``(n, c, H, W)``; image-only queries on other data are an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product

import torch
import torch.nn.functional as F

from miaudit.exceptions import ValidationError
from miaudit.registry import Registry

#: Pixels by which the shift queries move an image (LiRA reference code: ``shift=1``).
SHIFT_PIXELS = 1
#: Row/column offsets of the shift grid, in units of :data:`SHIFT_PIXELS`.
_OFFSETS = (-1, 0, 1)

__all__ = [
    "QUERIES",
    "SHIFT_PIXELS",
    "QuerySet",
    "apply_queries",
    "identity_view",
    "mirror",
    "n_queries",
    "resolve_queries",
    "shift",
]


def _check_image(x: torch.Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValidationError(
            f"query {what!r} needs images of shape (n, channels, height, width); the data has "
            f"records of shape {tuple(x.shape[1:])} (use 'identity' for non-image data)"
        )


def mirror(x: torch.Tensor) -> torch.Tensor:
    """Horizontal mirror of images ``(n, c, H, W)`` (reverse the width axis)."""
    _check_image(x, "mirror")
    return x.flip(-1)


def shift(
    x: torch.Tensor, dy: torch.Tensor | int, dx: torch.Tensor | int, pad: int
) -> torch.Tensor:
    """Shift images by ``(dy, dx)`` with reflection padding: ``reflect_pad(x, pad)`` cropped at
    ``(pad + dy, pad + dx)``.

    Parameters
    ----------
    x : tensor of shape (n, c, H, W)
    dy, dx : int or tensor of shape (n,), int64
        Row and column offsets in ``[-pad, pad]``, one per image or shared.
    pad : int
        Reflection padding, ``0 <= pad < min(H, W)``.

    Returns
    -------
    tensor of shape (n, c, H, W)
    """
    _check_image(x, "shift")
    n, c, height, width = x.shape
    if not 0 <= pad < min(height, width):
        raise ValidationError(
            f"shift: padding {pad} must be in [0, {min(height, width) - 1}] for {height}×{width} "
            "images (reflection padding needs fewer pixels than the image side)"
        )
    if pad == 0:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    if isinstance(dy, int) and isinstance(dx, int):
        return padded[:, :, pad + dy : pad + dy + height, pad + dx : pad + dx + width]
    on = x.device
    dy_t = torch.as_tensor(dy, dtype=torch.int64, device=on).expand(n)
    dx_t = torch.as_tensor(dx, dtype=torch.int64, device=on).expand(n)
    rows = (pad + dy_t)[:, None] + torch.arange(height, device=on)
    cols = (pad + dx_t)[:, None] + torch.arange(width, device=on)
    return padded[
        torch.arange(n, device=on)[:, None, None, None],
        torch.arange(c, device=on)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


@dataclass(frozen=True)
class QuerySet:
    """A registered query name: ``views(x)`` returns its ``n_views`` transformed copies of x;
    ``identity_view`` is the position of the untransformed record among them, if any."""

    n_views: int
    views: Callable[[torch.Tensor], list[torch.Tensor]]
    identity_view: int | None = None


QUERIES: Registry[QuerySet] = Registry("query augmentation")


def _shift_grid(x: torch.Tensor, skip_center: bool) -> list[torch.Tensor]:
    return [
        shift(x, dy * SHIFT_PIXELS, dx * SHIFT_PIXELS, SHIFT_PIXELS)
        for dy, dx in product(_OFFSETS, _OFFSETS)
        if not (skip_center and dy == 0 and dx == 0)
    ]


#: Position of the unshifted view in the 3×3 shift grid.
_GRID_CENTRE = 4

QUERIES.register("identity")(QuerySet(1, lambda x: [x], identity_view=0))
QUERIES.register("mirror")(QuerySet(1, lambda x: [mirror(x)]))
QUERIES.register("shifts")(QuerySet(8, lambda x: _shift_grid(x, skip_center=True)))
QUERIES.register("mirror-shifts")(QuerySet(9, lambda x: _shift_grid(mirror(x), skip_center=False)))
QUERIES.register("lira-18")(
    QuerySet(
        18,
        lambda x: _shift_grid(x, False) + _shift_grid(mirror(x), False),
        identity_view=_GRID_CENTRE,
    )
)


def resolve_queries(names: Sequence[str] | str) -> tuple[str, ...]:
    """Validate a query list (a name or a sequence of registered names) and return it as a tuple.

    Raises
    ------
    UnknownNameError
        For an unregistered name (the message lists the valid ones).
    ValidationError
        For an empty list.
    """
    seq = (names,) if isinstance(names, str) else tuple(names)
    if not seq:
        raise ValidationError(f"queries: give at least one query; valid: {', '.join(QUERIES)}")
    for name in seq:
        QUERIES.get(name)
    return tuple(str(n).lower() for n in seq)


def n_queries(names: Sequence[str]) -> int:
    """Total number of views ``q`` of a query list."""
    return sum(QUERIES.get(n).n_views for n in resolve_queries(names))


def identity_view(names: Sequence[str]) -> int | None:
    """Position of the first untransformed view in a query list's ``q`` views, or None."""
    offset = 0
    for name in resolve_queries(names):
        qs = QUERIES.get(name)
        if qs.identity_view is not None:
            return offset + qs.identity_view
        offset += qs.n_views
    return None


def apply_queries(x: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
    """All ``q`` views of the records ``x`` ``(n, *input_shape)``, in query-list order."""
    out: list[torch.Tensor] = []
    for name in resolve_queries(names):
        out.extend(QUERIES.get(name).views(x))
    return out
