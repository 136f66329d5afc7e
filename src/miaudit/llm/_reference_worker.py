"""Trains reference LMs in a separate interpreter: ``python -m miaudit.llm._reference_worker
JOB PARENT_PID``.

``JOB`` is a pickle written by :class:`miaudit.llm.demo._BackgroundReferences` (this package's
own data, never a user's file) holding the keyword arguments of
:func:`~miaudit.llm.reference_run.stored_reference_signals`. The worker trains the missing
references into the store with one torch thread, writes ``{"trained": [...]}`` beside the job
(``JOB`` with the suffix ``.json``) and exits; it dies with the parent process.

A fresh interpreter rather than ``multiprocessing``: a ``spawn`` child re-imports the caller's
``__main__`` module, so a user's script that calls :func:`~miaudit.llm.demo.run_llm_demo`
without an ``if __name__ == "__main__":`` guard would run the whole demo again inside the
worker.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    job_path, parent = (argv if argv is not None else sys.argv[1:])[:2]
    from miaudit.audit.executors import _die_with_parent

    _die_with_parent(int(parent))
    import torch

    from miaudit.llm.reference_run import stored_reference_signals

    torch.set_num_threads(1)
    with Path(job_path).open("rb") as f:
        job = pickle.load(f)  # written by this package for this worker
    _, _, trained = stored_reference_signals(**job)
    Path(job_path).with_suffix(".json").write_text(json.dumps({"trained": trained}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
