"""``/v1/vaults``: vaults (a key the signer nodes share) and the addresses derived from them."""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import Paging, VaultId
from harbour.api.routing import PAGE_DOC, PENDING, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("vaults")


@router.post(
    "/vaults",
    summary="Create a vault: generate its key, then propose binding it",
    description="Runs distributed key generation on the signer nodes (no node ever holds the key), then proposes "
    "the governance change that makes the key this vault (`vault.add`). " + PENDING + " The vault exists, and can "
    "be used, once it lands.",
    **returns(shapes.GovernanceTransaction, 202),
)
def create_vault(custody: Custody, actor: Actor, body: schemas.CreateVault) -> Json:
    return custody.create_vault(actor, name=body.name, threshold=body.threshold, nodes=body.nodes)


@router.get("/vaults", summary="List vaults", description=PAGE_DOC, **returns(shapes.VaultPage))
def list_vaults(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_vaults(actor, page)


@router.get("/vaults/{vault_id}", summary="A vault with its balances", **returns(shapes.VaultDetail))
def get_vault(custody: Custody, actor: Actor, vault_id: VaultId) -> Json:
    return custody.get_vault(actor, vault_id)


@router.post("/vaults/{vault_id}/addresses", summary="Derive a new address", **returns(shapes.Address, 201))
def derive_address(
    custody: Custody, actor: Actor, vault_id: VaultId, body: schemas.DeriveAddress | None = None
) -> Json:
    return custody.derive_address(actor, vault_id, label=body.label if body is not None else None)


@router.get(
    "/vaults/{vault_id}/addresses",
    summary="List a vault's addresses",
    description=PAGE_DOC,
    **returns(shapes.AddressPage),
)
def list_addresses(custody: Custody, actor: Actor, vault_id: VaultId, page: Paging) -> Json:
    return custody.list_addresses(actor, vault_id, page)


@router.patch(
    "/vaults/{vault_id}",
    summary="Propose renaming or archiving a vault",
    description=PENDING + " `name` renames it (`vault.rename`); `archived: true` archives it (`vault.archive`).",
    **returns(shapes.GovernanceTransaction, 202),
)
def update_vault(custody: Custody, actor: Actor, vault_id: VaultId, body: schemas.UpdateVault) -> Json:
    return custody.update_vault(actor, vault_id, **body.given())


@router.delete(
    "/vaults/{vault_id}",
    summary="Propose archiving a vault",
    description=PENDING + " Once it lands the vault takes no new withdrawal or address (the signer nodes refuse "
    "to sign one too); its key, addresses and history stay, and deposits to it are still credited.",
    **returns(shapes.GovernanceTransaction, 202),
)
def archive_vault(custody: Custody, actor: Actor, vault_id: VaultId) -> Json:
    return custody.archive_vault(actor, vault_id)


@router.post(
    "/vaults/{vault_id}/reshare",
    summary="Reshare a vault's key onto another committee, then propose recording it",
    description="Admin only. The signer nodes deal the same key (same public key, same addresses) anew to the named "
    "nodes at the threshold given; members leaving the committee delete their shares. Then proposes the governance "
    "change that records the new committee (`vault.reshare`), with every new holder's signed statement. "
    + PENDING
    + " Until it lands the nodes sign for the vault only as the holders the log states. 409 for a node the log "
    "does not name, a threshold the rules forbid, too few of the key's nodes answering, or a withdrawal of the "
    "vault being signed.",
    **returns(shapes.GovernanceTransaction, 202),
)
def reshare_vault(custody: Custody, actor: Actor, vault_id: VaultId, body: schemas.ReshareVault) -> Json:
    return custody.reshare_vault(actor, vault_id, nodes=body.nodes, threshold=body.threshold)
