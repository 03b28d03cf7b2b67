"""Sub-status codes: the documented table and the code agree, and only known codes can be recorded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harbour.custody import models as m
from harbour.custody import outcomes

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def documented_codes() -> set[str]:
    text = API_DOC.read_text(encoding="utf-8")
    section = text.split("## Sub-status codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.MULTILINE))


def test_every_code_is_documented_and_every_documented_code_exists() -> None:
    assert documented_codes() == set(outcomes.CODES)


def test_record_sets_code_and_text_together_and_clear_removes_both() -> None:
    tx = m.Transaction()
    outcomes.record(tx, outcomes.REVERTED, "the transaction reverted on chain")
    assert (tx.sub_status, tx.error) == ("reverted", "the transaction reverted on chain")
    outcomes.clear(tx)
    assert (tx.sub_status, tx.error) == (None, None)


def test_an_unknown_code_is_refused() -> None:
    tx = m.Transaction()
    with pytest.raises(ValueError, match="unknown sub-status"):
        outcomes.record(tx, "went-wrong", "something")
    assert tx.sub_status is None and tx.error is None
