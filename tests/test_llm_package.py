"""The public names of :mod:`miaudit.llm`: every one resolves, the reference store is imported
only on first use, and the docstring names the attack families."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("transformers")

import miaudit.llm


def test_every_exported_name_resolves():
    for name in miaudit.llm.__all__:
        assert getattr(miaudit.llm, name) is not None, name
    assert set(miaudit.llm.__all__) <= set(dir(miaudit.llm))
    from miaudit.llm.reference_run import audit_texts_with_references

    assert miaudit.llm.audit_texts_with_references is audit_texts_with_references
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = miaudit.llm.nothing_here


@pytest.mark.parametrize(
    "name", ["pseudo_log_likelihood", "load_masked_lm", "token_frequencies", "resolve_rmia_a",
             "stored_reference_signals", "ReferenceSpec", "MASKED_LM_ATTACKS"],
)  # fmt: skip
def test_recent_functions_are_exported(name):
    assert name in miaudit.llm.__all__


def test_import_stays_cheap():
    code = textwrap.dedent(
        """
        import sys
        import miaudit.llm
        print(sorted(m for m in ("transformers", "miaudit.llm.reference_run",
                                 "miaudit.audit.executors") if m in sys.modules))
        miaudit.llm.ReferenceSpec
        print("miaudit.llm.reference_run" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_docstring_names_the_attack_families():
    doc = miaudit.llm.__doc__ or ""
    for word in ("RMIA", "Masked LMs", "DC-PDD", "llm.model_kind", "llm.frequency_corpus",
                 "llm.population"):  # fmt: skip
        assert word in doc, word
