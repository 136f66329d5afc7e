"""An attack defined outside miaudit: the target's logit margin, registered by an entry point."""

import numpy as np
from numpy.typing import NDArray

from miaudit.attacks import Attack, AttackData, AttackInfo


class MarginAttack(Attack):
    r"""Score = ``scale`` · mean over queries of :math:`z_y - \max_{j \ne y} z_j`."""

    info = AttackInfo(
        name="margin",
        title="Margin: the target's logit margin (an example plug-in)",
        paper="Yeom et al., CSF 2018 (a threshold on a confidence statistic)",
        signals=("margin",),
    )

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        return self.scale * data.signal("margin", "target").mean(axis=-1)
