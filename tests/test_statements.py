"""The approval statements: the exact bytes approvers sign, and a module light enough for the CLI.

The known answers were taken from the statement code as it stood before it
moved into ``harbour.custody.statements``: a change to any byte would void
every approval signed before it, and would make the nodes refuse new ones.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harbour.custody import statements
from harbour.governance import changes
from harbour.governance.fields import GovernanceError
from harbour.governance.log import Entry, entry_hash, sign_entry, verify_entry_signature
from harbour.node import quorum

ORG, KEY_ID, PATH = "org-1", "vault-0011223344556677", "m/0"
SENDER, RECIPIENT = "0x" + "11" * 20, "0x2222222222222222222222222222222222222222"
TOKEN = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
DIGEST = "ab" * 32

ETH_INTENT = quorum.Intent(chain_id=1, sender=SENDER, recipient=RECIPIENT, asset="ETH", amount=3 * 10**18)
TOKEN_INTENT = quorum.Intent(chain_id=1, sender=SENDER, recipient=RECIPIENT, asset=TOKEN, amount=1_500_000)

ETH_APPROVE = bytes.fromhex(
    "a8636f7267656f72672d316470617468636d2f306474797065781c686172626f75722d7472616e73616374696f6e2d617070726f"
    "76616c66696e74656e74a562746f782a307832323232323232323232323232323232323232323232323232323232323232323232"
    "3232323232326466726f6d782a3078313131313131313131313131313131313131313131313131313131313131313131313131"
    "313131316561737365746345544866616d6f756e74733330303030303030303030303030303030303068636861696e5f696401"
    "666b65795f6964767661756c742d303031313232333334343535363637376776657273696f6e01686465636973696f6e6761"
    "7070726f76656e7472616e73616374696f6e5f69646474782d31"
)
ETH_REJECT = bytes.fromhex(
    "a8636f7267656f72672d316470617468636d2f306474797065781c686172626f75722d7472616e73616374696f6e2d617070726f"
    "76616c66696e74656e74a562746f782a307832323232323232323232323232323232323232323232323232323232323232323232"
    "3232323232326466726f6d782a3078313131313131313131313131313131313131313131313131313131313131313131313131"
    "313131316561737365746345544866616d6f756e74733330303030303030303030303030303030303068636861696e5f696401"
    "666b65795f6964767661756c742d303031313232333334343535363637376776657273696f6e01686465636973696f6e6672"
    "656a6563746e7472616e73616374696f6e5f69646474782d31"
)
TOKEN_APPROVE = bytes.fromhex(
    "a8636f7267656f72672d316470617468636d2f306474797065781c686172626f75722d7472616e73616374696f6e2d617070726f"
    "76616c66696e74656e74a562746f782a307832323232323232323232323232323232323232323232323232323232323232323232"
    "3232323232326466726f6d782a3078313131313131313131313131313131313131313131313131313131313131313131313131"
    "31313131656173736574782a30783561416562363035334633453934433962394130396633333636393433354537456631426541"
    "656466616d6f756e74673135303030303068636861696e5f696401666b65795f6964767661756c742d3030313132323333343435"
    "35363637376776657273696f6e01686465636973696f6e67617070726f76656e7472616e73616374696f6e5f69646474782d32"
)
ENTRY = Entry(
    org=ORG,
    seq=4,
    prev=bytes.fromhex(DIGEST),
    proposer="alice",
    at=1_800_000_000,
    changes=(changes.DisableUser("mallory"), changes.SetWhitelisted("book-1", True)),
)


def withdrawal(intent: quorum.Intent = ETH_INTENT, tx_id: str = "tx-1") -> statements.WithdrawalApproval:
    return statements.WithdrawalApproval(org=ORG, transaction_id=tx_id, key_id=KEY_ID, path=PATH, intent=intent)


def governance(entry: Entry = ENTRY) -> statements.GovernanceApproval:
    return statements.GovernanceApproval(org=ORG, transaction_id="tx-1", data=entry.encode())


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_withdrawal_statements_are_the_bytes_signed_before_the_move() -> None:
    assert withdrawal().statement() == ETH_APPROVE
    assert withdrawal().statement("reject") == ETH_REJECT
    assert withdrawal(TOKEN_INTENT, "tx-2").statement() == TOKEN_APPROVE


def test_withdrawal_statements_are_what_the_signer_nodes_rebuild() -> None:
    fields: dict[str, Any] = {"org": ORG, "transaction_id": "tx-1", "key_id": KEY_ID, "path": PATH}
    assert withdrawal().statement() == quorum.approval_statement(**fields, intent=ETH_INTENT)


def test_a_governance_approval_signs_the_entry_itself_and_a_rejection_its_hash_under_another_tag() -> None:
    subject = governance()
    assert subject.statement() == ENTRY.encode()
    assert subject.statement("reject") == b"harbour/governance-reject/v1\x00" + entry_hash(ENTRY.encode())
    assert subject.changes() == ["disable user mallory", "address-book entry book-1 is now whitelisted"]
    key = Ed25519PrivateKey.generate()
    signature = subject.sign(key, subject.statement())
    assert signature == sign_entry(key, ENTRY.encode())  # the entry's own signature: it goes into the log
    assert verify_entry_signature(public(key), signature, ENTRY.encode())


def test_governance_bytes_that_are_no_entry_are_refused() -> None:
    with pytest.raises(GovernanceError):
        statements.GovernanceApproval(org=ORG, transaction_id="tx-1", data=b"\xa0")
    with pytest.raises(GovernanceError):  # a rejection statement is no entry, so it cannot be approved as one
        statements.GovernanceApproval(org=ORG, transaction_id="tx-1", data=governance().statement("reject"))


def test_a_subject_is_rebuilt_from_the_approval_request_fields_alone() -> None:
    for subject, kind in ((withdrawal(), "withdrawal"), (governance(), "governance")):
        request = {
            "transaction": {"id": "tx-1", "kind": kind},
            "statement": "00",  # never read: the caller compares the rebuilt statement with it
            "org": ORG,
            **subject.request_fields(),
        }
        assert statements.from_request(request, "tx-1") == subject


def test_a_request_of_another_kind_or_with_a_malformed_intent_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        statements.from_request({"transaction": {"kind": "deposit"}, "org": ORG}, "tx-1")
    request = {"transaction": {"kind": "withdrawal"}, "org": ORG, **withdrawal().request_fields()}
    request["intent"] = {**request["intent"], "amount": "01"}
    with pytest.raises(quorum.EvidenceError):
        statements.from_request(request, "tx-1")


def test_a_governance_request_that_describes_its_entry_otherwise_is_refused() -> None:
    request = {"transaction": {"kind": "governance"}, "org": ORG, **governance().request_fields()}
    lying = {**request, "changes": ["address-book entry book-1 is now whitelisted"]}
    with pytest.raises(ValueError, match="not what the entry"):
        statements.from_request(lying, "tx-1")
    elsewhere = {**request, "org": "org-2"}
    with pytest.raises(ValueError, match="organisation"):
        statements.from_request(elsewhere, "tx-1")


def test_each_kind_verifies_only_its_own_signatures() -> None:
    key = Ed25519PrivateKey.generate()
    for subject in (withdrawal(), governance()):
        statement = subject.statement()
        signature = subject.sign(key, statement)
        assert subject.verifies(public(key), signature, statement)
        assert not subject.verifies(public(key), signature, subject.statement("reject"))
        assert not subject.verifies(public(Ed25519PrivateKey.generate()), signature, statement)
        assert not subject.verifies(public(key)[:31], signature, statement)
    # a withdrawal approval is signed under the nodes' domain tag: it is no governance signature, and back
    statement = withdrawal().statement()
    assert not governance().verifies(public(key), withdrawal().sign(key, statement), statement)
    assert not withdrawal().verifies(public(key), governance().sign(key, statement), statement)


@pytest.mark.process  # a fresh interpreter
def test_importing_the_statements_loads_no_database_chain_client_or_service() -> None:
    code = (
        "import sys\n"
        "import harbour.custody.statements\n"
        "heavy = ('sqlalchemy', 'web3', 'harbour.custody.service', 'harbour.custody.models')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
