"""Request bodies and parameters: strict, closed and bounded.

Every model forbids unknown fields (a misspelt ``amuont`` is an error, not a
silently ignored field next to a default) and is strict (``"3"`` is not a
threshold, ``1`` is not ``true``). Amounts are integers in base units, given as a
canonical decimal string (``"1500000000000000000"``) or a JSON integer: never a
float, which most JSON parsers turn into a double that cannot hold 10^18 + 1.
Names and lists are bounded so that a request cannot make the service store
megabytes. The custody service checks everything again; these checks exist so
that the OpenAPI schema tells clients the rules and so that a malformed request
is refused with every offending field named before any work starts.

The schema states exactly what is accepted: what a regular expression cannot
say is a named ``format`` (:data:`FORMATS`), so a request that keeps to the
schema is never refused as invalid (a test generates them for every operation).
Names and notes are free text (:mod:`harbour.util.text`): their pattern is the
characters refused, and the value the service keeps is the normal form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from harbour.chains.eip1559 import TransactionError, parse_address
from harbour.governance import destinations
from harbour.node import quorum
from harbour.util import text

MAX_AMOUNT: Final = 2**256 - 1
"""The largest value an EVM transfer can carry (uint256)."""
MAX_NAME: Final = text.MAX_NAME
MAX_INDEX: Final = 2**62
"""The largest audit event index or tree size a request names."""
ROLES: Final = ("admin", "initiator", "approver", "auditor", "viewer")
UUID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
IDEMPOTENCY_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_=-]{1,512}$"
INDEX_CURSOR_PATTERN: Final = r"^[0-9]{1,18}$"
NODE_NAME_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$"
EXTERNAL_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,77})")

ADDRESS_PATTERN: Final = "^0x[0-9a-fA-F]{40}$"
CIDR_PATTERN: Final = r"^[0-9a-fA-F.:]{2,39}(/[0-9]{1,3})?$"
Cidr = Annotated[
    str, Field(pattern=CIDR_PATTERN), WithJsonSchema({"type": "string", "pattern": CIDR_PATTERN, "format": "cidr"})
]
"""A network in CIDR notation, without host bits (format cidr)."""
_PORT: Final = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
WEBHOOK_URL_PATTERN: Final = rf"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9.-]+(:{_PORT})?([/?][!-\"$-~]*)?$"
"""An absolute http(s) URL of printable ASCII: a host name or IPv4 address, a port in 1..65535, no ``@``, no ``#``."""
TIME_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
"""A time with its offset, as ``datetime.fromisoformat`` reads it; the date must also exist (format utc-time)."""
FORMATS: Final = {
    "ethereum-address": "0x and 40 hex digits; in mixed case, the EIP-55 checksum must hold",
    "ethereum-destination": "an ethereum-address that is not the zero address or a precompile "
    "(0x01..0x11, 0x100): funds sent there are lost",
    "ed25519-public-key": "64 lower-case hex digits: an Ed25519 point of the prime-order subgroup",
    "uint256-decimal": "a whole number 1..2**256 - 1 in decimal digits, without sign or leading zero",
    "page-cursor": "a next_cursor this API returned (base64url of a time and a row id)",
    "free-text-name": "free text the pattern allows, kept in NFC, trimmed, with single spaces, and compared "
    "ignoring case and width (harbour.util.text)",
    "free-text-note": "free text the pattern allows, kept in NFC and trimmed (harbour.util.text)",
    "cidr": "an IPv4 or IPv6 network in CIDR notation without host bits (10.0.0.0/8, 2001:db8::/32)",
    "utc-time": "an ISO 8601 date and time with its UTC offset (Z or +hh:mm) that names a real instant",
}
"""The formats the schema names beyond JSON Schema's own, and what each means (docs/api.md lists them too)."""

Role = Literal["admin", "initiator", "approver", "auditor", "viewer"]
TransactionState = Literal[
    "submitted",
    "pending_policy",
    "pending_approval",
    "approved",
    "signing",
    "broadcast",
    "confirmed",
    "failed",
    "rejected",
    "cancelled",
]


def _amount(value: Any) -> int:
    if type(value) is int:
        number = value
    elif isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ValueError(
                "an amount is a whole number of base units written as decimal digits with no sign, "
                "point, exponent or leading zero (e.g. '1500000000000000000')"
            )
        number = int(value)
    elif isinstance(value, float):
        raise ValueError("amounts are not accepted as JSON floats; send base units as a decimal string")
    else:
        raise ValueError("an amount is a decimal string or a JSON integer of base units")
    if not 1 <= number <= MAX_AMOUNT:
        raise ValueError("an amount must be at least 1 base unit and at most 2**256 - 1")
    return number


def _address(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("an address is a string: 0x followed by 40 hex digits")
    try:
        parse_address(value)
    except TransactionError as exc:
        raise ValueError(str(exc)) from None
    return value


def _destination(value: Any) -> str:
    why = destinations.reserved(_address(value))
    if why is not None:
        raise ValueError(f"{value} is {why}: funds sent there are lost")
    return str(value)


def _public_key(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("an Ed25519 public key is 64 lower-case hex digits")
    try:
        quorum.check_public_key(bytes.fromhex(value))
    except ValueError as exc:  # off the curve, or of small order: signatures under it could be forged
        raise ValueError(f"the key is not usable: {exc}") from None
    return value


def _name(value: Any) -> str:
    return text.name(value)


def _note(value: Any) -> str:
    return text.note(value) or ""


@dataclass(frozen=True)
class _FreeText:
    """The JSON schema of a name or a note: its bound and the characters it may not hold (built when asked)."""

    kind: Literal["name", "note"]

    def __get_pydantic_json_schema__(self, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        if self.kind == "name":
            return {
                "type": "string",
                "format": "free-text-name",
                "minLength": 1,
                "maxLength": text.MAX_NAME,
                "pattern": text.name_pattern(),
                "description": f"Free text, 1..{text.MAX_NAME} characters, not only spaces; no control, format "
                "(bidirectional), separator, private-use, unassigned or surrogate characters. Kept in NFC, "
                "trimmed, with single spaces; compared ignoring case and width (docs/api.md, Input rules).",
            }
        return {
            "type": "string",
            "format": "free-text-note",
            "maxLength": text.MAX_NOTE,
            "pattern": text.note_pattern(),
            "description": f"Free text, at most {text.MAX_NOTE} characters, with no control, format "
            "(bidirectional), separator, private-use, unassigned or surrogate characters. Kept in NFC, trimmed.",
        }


Amount = Annotated[
    int,
    BeforeValidator(_amount),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "pattern": r"^[1-9][0-9]{0,77}$", "format": "uint256-decimal"},
                {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT},
            ],
            "description": "Base units (wei for ETH), 1..2**256 - 1: a decimal string, or a JSON integer. "
            "Never a float.",
            "examples": ["1500000000000000000"],
        }
    ),
]
MAX_WEI_PER_GAS: Final = 10**14 - 1


def _wei_per_gas(value: Any) -> int:
    number = _amount(value)
    if number > MAX_WEI_PER_GAS:
        raise ValueError(f"a fee cap is at most {MAX_WEI_PER_GAS} wei per gas (14 digits)")
    return number


WeiPerGas = Annotated[
    int,
    BeforeValidator(_wei_per_gas),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "pattern": r"^[1-9][0-9]{0,13}$"},
                {"type": "integer", "minimum": 1, "maximum": MAX_WEI_PER_GAS},
            ],
            "description": "Wei per gas, 1..10**14 - 1: a decimal string, or a JSON integer (docs/api.md#fees).",
            "examples": ["30000000000"],
        }
    ),
]
EthAddress = Annotated[
    str,
    BeforeValidator(_address),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ADDRESS_PATTERN,
            "format": "ethereum-address",
            "description": "An Ethereum address; mixed case must pass its EIP-55 checksum.",
            "examples": ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"],
        }
    ),
]
Destination = Annotated[
    str,
    BeforeValidator(_destination),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ADDRESS_PATTERN,
            "format": "ethereum-destination",
            "description": "An Ethereum address funds can be sent to: mixed case must pass its EIP-55 checksum, "
            "and the zero address and the precompiles (0x01..0x11, 0x100) are refused.",
            "examples": ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"],
        }
    ),
]
Name = Annotated[str, BeforeValidator(_name), _FreeText("name")]
"""A name: free text in its one form (:func:`harbour.util.text.name`)."""
PublicKeyHex = Annotated[
    str,
    BeforeValidator(_public_key),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "format": "ed25519-public-key",
            "description": "Ed25519 public key, 64 lower-case hex digits, of the prime-order subgroup.",
        }
    ),
]
SignatureHex = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$", description="Ed25519 signature, 128 lowercase hex.")]
AssetSymbol = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9]{1,16}$", examples=["ETH", "USDC"])]
NodeName = Annotated[str, Field(min_length=1, max_length=64, pattern=NODE_NAME_PATTERN)]
Note = Annotated[str, BeforeValidator(_note), _FreeText("note")]
"""A note: free text (NFC, trimmed); one that is empty once trimmed is no note (the service keeps none)."""


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DevFund(Closed):
    """ETH for an address from a development chain's prefunded account (docs/api.md#development-faucet)."""

    address: EthAddress
    amount: Amount


class CreateUser(Closed):
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"roles": {"contains": {"enum": ["admin", "approver"]}}}, "required": ["roles"]},
            "then": {"properties": {"approval_key": {"type": "string"}}, "required": ["approval_key"]},
        }
    )

    name: Name
    roles: Annotated[list[Role], Field(min_length=1, max_length=len(ROLES))]
    approval_key: PublicKeyHex | None = None
    """Required for approvers and admins who approve: the key their approvals are checked against."""


class SetRoles(Closed):
    roles: Annotated[list[Role], Field(min_length=1, max_length=len(ROLES))]


class SetApprovalKey(Closed):
    approval_key: PublicKeyHex | None
    """The user's new approval key; null removes it (only from a user who is neither approver nor admin)."""


class IssueCredential(Closed):
    """The terms of a new credential; every field is optional, and an empty body issues an unrestricted one."""

    expires_in: Annotated[int, Field(ge=60, le=10 * 366 * 86_400, description="Seconds until it expires.")] | None = (
        None
    )
    scopes: Annotated[list[Literal["full", "initiate", "read"]], Field(min_length=1, max_length=3)] | None = None
    """``read``: GET requests only; ``initiate``: reads and submitting, explaining, cancelling withdrawals;
    ``full`` (the default): everything the user's roles allow."""
    allow: Annotated[list[Cidr], Field(min_length=1, max_length=32)] | None = None
    """CIDR blocks requests may come from (``10.0.0.0/8``, ``2001:db8::/32``); default anywhere."""
    signing_key: PublicKeyHex | None = None
    """An Ed25519 public key: every request must then be signed with its private half (docs/api.md)."""


class CreateVault(Closed):
    name: Name
    threshold: Annotated[
        int,
        Field(
            ge=2,
            le=64,
            description="Signers needed: more than half the nodes, at most all of them (else 409).",
        ),
    ]
    nodes: (
        Annotated[list[NodeName], Field(min_length=1, max_length=64, json_schema_extra={"uniqueItems": True})] | None
    ) = None
    """Node names in party order, each once (an unknown one is 404); default: every node the service knows."""


class ReshareVault(Closed):
    nodes: Annotated[list[NodeName], Field(min_length=2, max_length=64, json_schema_extra={"uniqueItems": True})]
    """The whole new committee by node name (an unknown one is 404; one the governance log does not name is 409)."""
    threshold: Annotated[
        int,
        Field(
            ge=2,
            le=64,
            description="Signers needed: more than half the new committee, at most all of it, and never below the "
            "key's threshold now (else 409).",
        ),
    ]


class DeriveAddress(Closed):
    label: Name | None = None


class AddAsset(Closed):
    """The chain's own coin (no contract, 18 decimals) or an ERC-20 token (its contract); the service checks which."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "native"}}},
            "then": {"properties": {"contract": {"type": "null"}, "decimals": {"const": 18}}},
            "else": {"properties": {"contract": {"type": "string"}}, "required": ["contract"]},
        }
    )

    symbol: AssetSymbol
    kind: Literal["native", "erc20"]
    contract: EthAddress | None = None
    decimals: Annotated[int, Field(ge=0, le=36)]


class AddAddressBookEntry(Closed):
    name: Name
    address: Destination
    whitelisted: bool = False


class Whitelist(Closed):
    whitelisted: bool


class AddNode(Closed):
    name: NodeName
    """A signer node this deployment is configured with (custody.json ``nodes``); its key is its descriptor's."""


class Withdrawal(Closed):
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"signature": {"type": "string"}}, "required": ["signature"]},
            "then": {"properties": {"id": {"type": "string"}}, "required": ["id"]},
        }
    )

    vault_id: Annotated[str, Field(pattern=UUID_PATTERN)]
    asset: AssetSymbol
    to: Destination
    amount: Amount
    note: Note | None = None
    id: Annotated[str, Field(pattern=UUID_PATTERN)] | None = Field(
        default=None, description="The transaction id the initiator chose (a fresh UUID): what `signature` is over."
    )
    signature: SignatureHex | None = Field(
        default=None,
        description="The initiator's Ed25519 signature over the request (docs/governance.md#signed-requests); "
        "needed when the policy in force depends on who initiates.",
    )
    source_address: EthAddress | Annotated[str, Field(pattern=UUID_PATTERN)] | None = Field(
        default=None,
        description="The vault address that pays (the address or its id); without it, the first of the vault's "
        "addresses that can pay alone (docs/custody.md, Source addresses and sweeping).",
    )
    external_id: Annotated[str, Field(pattern=EXTERNAL_ID_PATTERN)] | None = Field(
        default=None,
        description="Your own reference (1..128 of `A-Za-z0-9._:-`), unique in the organisation: "
        "`GET /v1/transactions/external/{external_id}` finds the transaction by it.",
    )
    fee_level: Literal["slow", "normal", "fast"] | None = None
    max_fee_per_gas: WeiPerGas | None = None
    max_priority_fee_per_gas: WeiPerGas | None = None


class Fees(Closed):
    """A fee level, or both EIP-1559 caps (wei per gas, decimal strings); neither: the normal level."""

    fee_level: Literal["slow", "normal", "fast"] | None = None
    max_fee_per_gas: WeiPerGas | None = None
    max_priority_fee_per_gas: WeiPerGas | None = None


class Replacement(Fees):
    """A speed-up's or cancel's fees: a level's (raised to 10 % above the stuck transaction's) or caps that are."""


class Estimate(Closed):
    vault_id: Annotated[str, Field(pattern=UUID_PATTERN)]
    asset: AssetSymbol
    to: EthAddress
    amount: Amount


class Explain(Closed):
    vault_id: Annotated[str, Field(pattern=UUID_PATTERN)]
    asset: AssetSymbol
    to: Destination
    amount: Amount


class Decision(Closed):
    signature: SignatureHex
    """The approver's Ed25519 signature over the statement of ``GET .../approval-request``."""


class PolicyProposal(Closed):
    document: dict[str, Any]
    """A policy document (see docs/policy.md); the policy engine validates it."""


# -- PATCH bodies: the fields given change, the fields left out stay -------------------------------------


def _left_out(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # a field left out keeps its value: there is no default to announce


def absent(description: str | None = None) -> Any:
    """A PATCH field: may be left out, but not sent as null unless its type says so (nothing fills it in)."""
    return Field(default=None, description=description, json_schema_extra=_left_out)


class Patch(Closed):
    """A ``PATCH`` body: every field optional, at least one given (an empty one would change nothing)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _names_a_field(self) -> Patch:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        return self

    def given(self) -> dict[str, Any]:
        """The fields the request named (``null`` included: for an approval key it means remove)."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class UpdateUser(Patch):
    roles: Annotated[list[Role], Field(min_length=1, max_length=len(ROLES))] = absent()
    approval_key: PublicKeyHex | None = absent(
        "A new approval key (rotation); null removes it from one who signs nothing."
    )
    disabled: bool = absent("true disables the user; false enables them again.")


class UpdateVault(Patch):
    name: Name = absent()
    archived: Literal[True] = absent("Archives the vault: no new withdrawal or address; it is not brought back.")


class UpdateAsset(Patch):
    disabled: bool = Field(description="true: no withdrawal of the asset; false: enabled again.")


class UpdateAddressBookEntry(Patch):
    name: Name = absent()
    whitelisted: bool = absent()


WEBHOOK_EVENT_PATTERN: Final = r"^(\*|[a-z_]{1,24}\.[a-z_]{1,24})$"


class CreateWebhook(Closed):
    url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2048,
            pattern=WEBHOOK_URL_PATTERN,
            description="An http:// or https:// URL without credentials or fragment; its host must resolve "
            "(to a public address unless the operator allows private ones: else 409).",
        ),
    ]
    events: Annotated[
        list[Annotated[str, Field(pattern=WEBHOOK_EVENT_PATTERN)]],
        Field(min_length=1, max_length=32, description='Event types (docs/api.md, Webhooks), or `["*"]` for all.'),
    ]
    description: Note | None = None
