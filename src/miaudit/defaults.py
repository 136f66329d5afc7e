"""Every default that more than one module uses, defined once.

The metrics functions, the config, the CLI and the report all take their defaults from here, so
that ``miaudit evaluate``, ``miaudit run`` and :func:`miaudit.metrics.summarize` report the same
FPRs with the same interval level unless told otherwise.
"""

from __future__ import annotations

#: Target false-positive rates at which TPR is reported (1 %, 0.1 %, 0.01 %, 0.001 %); a rate
#: below 1 / (number of non-members) is reported as unreachable, never as a number.
DEFAULT_FPRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5)
#: Significance level: intervals are two-sided ``1 - alpha`` = 95 % intervals, and the ε lower
#: bound holds with probability ``1 - alpha``.
DEFAULT_ALPHA = 0.05
#: δ of the (ε, δ)-DP lower bound.
DEFAULT_DELTA = 1e-5
#: Bootstrap resamples of the AUC interval.
DEFAULT_N_BOOTSTRAP = 1000
#: The FPR the headline speaks of when it is among the reported FPRs and reachable.
HEADLINE_FPR = 1e-3
#: A record counts as flagged by a target when its score passes that target's threshold at
#: this FPR (the report's exposed-records table).
FLAG_FPR = 1e-2
#: Most exposed records listed in the report.
TOP_RECORDS = 20

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_DELTA",
    "DEFAULT_FPRS",
    "DEFAULT_N_BOOTSTRAP",
    "FLAG_FPR",
    "HEADLINE_FPR",
    "TOP_RECORDS",
]
