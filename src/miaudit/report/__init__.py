"""Reports of an audit: terminal tables (:mod:`.console`) and plots (:mod:`.plots`).

Submodules are imported on use, so that ``import miaudit.report`` does not load matplotlib.
"""
