"""Free text (``harbour.util.text``): each refused character class, the one normal form, and names that are one name.

Then the same rules as every verifier of a governance log applies them: an
entry whose name is not in its normal form is malformed, and a name that differs
from one in force only by case, width or spacing is refused as taken.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governance_env import Org, allow_all, raw, signer_nodes, stated_vault
from harbour.governance import changes as c
from harbour.governance.fields import GovernanceError
from harbour.util import text

BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"]
BAD = {
    **{f"bidi U+{ord(ch):04X}": ch for ch in BIDI},
    "arabic letter mark U+061C": "\u061c",
    "NUL": "\x00",
    "tab": "\t",
    "newline": "\n",
    "escape": "\x1b",
    "DEL": "\x7f",
    "C1 next line U+0085": "\x85",
    "C1 CSI U+009B": "\x9b",
    "zero-width space U+200B": "\u200b",
    "zero-width joiner U+200D": "\u200d",
    "byte-order mark U+FEFF": "\ufeff",
    "soft hyphen U+00AD": "\u00ad",
    "tag U+E0041": "\U000e0041",
    "line separator U+2028": "\u2028",
    "paragraph separator U+2029": "\u2029",
    "lone surrogate U+D800": "\ud800",
    "private use U+E000": "\ue000",
    "supplementary private use U+F0000": "\U000f0000",
    "unassigned U+0378": "\u0378",
    "noncharacter U+FFFF": "\uffff",
    "lengthened by NFC U+0958": "\u0958",
    "combining grapheme joiner U+034F": "\u034f",
    "variation selector U+FE0F": "\ufe0f",
    "khmer inherent vowel U+17B4": "\u17b4",
    "mongolian free variation selector U+180B": "\u180b",
    "hangul filler U+3164": "\u3164",
    "hangul choseong filler U+115F": "\u115f",
    "halfwidth hangul filler U+FFA0": "\uffa0",
    "blank braille pattern U+2800": "\u2800",
}


@pytest.mark.parametrize("char", BAD.values(), ids=list(BAD))
def test_each_refused_character_is_refused_in_names_and_notes(char: str) -> None:
    for value in (f"alice{char}", f"{char}alice", f"al{char}ice"):
        with pytest.raises(text.TextError, match=f"U\\+{ord(char):04X}"):
            text.name(value)
        with pytest.raises(text.TextError, match=f"U\\+{ord(char):04X}"):
            text.note(value)
        assert not text.is_name(value)
        assert re.fullmatch(text.name_pattern(), value) is None
        assert re.fullmatch(text.note_pattern(), value) is None


def test_a_name_is_kept_in_nfc_trimmed_with_single_spaces() -> None:
    assert text.name("  Ren\u0065\u0301e \u3000 Dupont\u00a0") == "Ren\u00e9e Dupont"
    assert text.note("  caf\u0065\u0301  au lait ") == "caf\u00e9  au lait"
    assert text.note("   ") is None
    assert text.name("陳大文") == "陳大文"


def test_names_and_notes_are_bounded() -> None:
    assert text.name("a" * 128) == "a" * 128
    with pytest.raises(text.TextError, match="129 characters; at most 128"):
        text.name("a" * 129)
    assert text.note("n" * 256) == "n" * 256
    with pytest.raises(text.TextError, match="at most 256"):
        text.note("n" * 257)
    for empty in ("", " ", "\u3000\u00a0"):
        with pytest.raises(text.TextError, match="besides spaces"):
            text.name(empty)
    with pytest.raises(text.TextError, match="must be text"):
        text.name(7)


@pytest.mark.parametrize("other", ["Bob", "BOB", "bob ", " bob", "ｂｏｂ", "Ｂｏｂ", "bo\u0062"])
def test_names_that_differ_only_in_case_width_or_spacing_are_one_name(other: str) -> None:
    assert text.name_key(text.name(other)) == text.name_key("bob")


def test_different_names_stay_different() -> None:
    assert len({text.name_key(n) for n in ("bob", "bobby", "b ob", "rob", "bób")}) == 5


@settings(max_examples=300, database=None)
@given(st.text(st.characters(codec="utf-8"), max_size=40))
def test_the_schema_pattern_accepts_exactly_what_the_service_accepts(value: str) -> None:
    try:
        kept = text.name(value)
    except text.TextError:
        kept = None
    assert (re.fullmatch(text.name_pattern(), value) is not None) == (kept is not None)
    if kept is not None:
        assert len(kept) <= len(value)  # normalising never lengthens, so one bound serves sent and kept text
        assert unicodedata.is_normalized("NFC", kept) and text.is_name(kept)


# -- in the governance log, as the nodes replay it --------------------------------------------------------


@pytest.fixture
def org() -> Org:
    return Org("names", policy=allow_all(), book=(("entry-bob", "0x" + "ab" * 20, False),))


@pytest.mark.parametrize(
    "name",
    ["mallory\u202eknil", "bob ", " bob", "bob  smith", "Rene\u0301e", "a\x1b[2J", "\u200balice", "a" * 129],
)
def test_a_log_entry_naming_a_user_in_any_other_form_is_malformed(org: Org, name: str) -> None:
    with pytest.raises(GovernanceError) as refused:
        org.propose(c.AddUser("u-new", name, frozenset({"viewer"}), None))
    assert refused.value.reason == "malformed"
    assert "u-new" not in org.log.state.users


@pytest.mark.parametrize("name", ["IVAN", "Ivan", "ｉｖａｎ"])
def test_a_log_entry_adding_a_user_whose_name_is_taken_up_to_case_is_refused(org: Org, name: str) -> None:
    with pytest.raises(GovernanceError, match=r"the user name .* is taken") as refused:
        org.propose(c.AddUser("u-new", name, frozenset({"viewer"}), None))
    assert refused.value.reason == "change"


def test_address_book_names_are_unique_until_the_entry_is_removed(org: Org) -> None:
    with pytest.raises(GovernanceError, match="address-book name 'Entry-Bob' is taken"):
        org.propose(c.AddAddress("entry-2", "Entry-Bob", "0x" + "cd" * 20, False))
    org.propose(c.RemoveAddress("entry-bob"))
    org.propose(c.AddAddress("entry-2", "Entry-Bob", "0x" + "cd" * 20, False))
    assert org.log.state.address_book["entry-2"].name == "Entry-Bob"


def test_two_users_named_alike_in_one_entry_are_refused(org: Org) -> None:
    with pytest.raises(GovernanceError, match="the user name 'Dora' is taken"):
        org.propose(
            c.AddUser("u-1", "dora", frozenset({"viewer"}), None), c.AddUser("u-2", "Dora", frozenset({"viewer"}), None)
        )


def test_a_log_entry_adding_a_vault_whose_name_is_taken_up_to_case_is_refused() -> None:
    nodes = signer_nodes()
    org = Org("vaults", policy=allow_all(), nodes={name: raw(key) for name, key in nodes.items()})
    org.propose(stated_vault(org.log.genesis_hash, "treasury", "key-1", nodes))
    clash = stated_vault(org.log.genesis_hash, "vault-2", "key-2", nodes)
    with pytest.raises(GovernanceError, match="the vault name 'Treasury' is taken"):
        org.propose(replace(clash, name="Treasury"))
    with pytest.raises(GovernanceError, match="vault name is not in its normal form") as refused:
        org.propose(replace(clash, name="treasury\u00a0two"))
    assert refused.value.reason == "malformed"
