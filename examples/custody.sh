#!/usr/bin/env bash
# A custody deployment by hand, top to bottom, in an empty directory: a custody
# home, three signer nodes that judge every withdrawal from the organisation's
# governance log, two admins, two approvers and an initiator, a policy built from
# those users, a funded vault, a withdrawal through two approvals to
# confirmation, and the audit proof. README.md shows this file; the tests run it
# as it is, on the embedded chain and on anvil (CHAIN=http://127.0.0.1:8545).
set -euo pipefail
trap 'kill $(cat *.pid 2>/dev/null) 2>/dev/null || true' EXIT   # stop the nodes and the service at the end

# Secrets come from the environment (or a prompt), never from the command line.
export HARBOUR_NODE_PASSPHRASE='signer node store: long and unguessable'
export HARBOUR_CUSTODY_PASSPHRASE='custody home keys: long and unguessable'
export HARBOUR_APPROVER_PASSPHRASE='approver keys: long and unguessable'
export HARBOUR_API=http://127.0.0.1:8700
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }   # a field of the JSON on stdin
wait_for() { for _ in $(seq 100); do "$@" > /dev/null 2>&1 && return; sleep 0.3; done; "$@"; }   # at most 30 s

# 1. The custody home: its approval authority, audit key, SQLite database and chain.
if [ "${CHAIN:-embedded}" = embedded ]; then
  harbour custody init --home custody
else
  harbour custody init --home custody --chain "$CHAIN" --dev-chain   # a development node (anvil)
fi

# 2. Three signer nodes that make and sign only keys of an organisation they
#    enrolled (--organisations-only), and only on the approvals its governance
#    log requires. add-node asks each node, and refuses one that would sign on
#    the service's word alone.
for i in 1 2 3; do
  harbour node init --dir nodes/node$i --name node$i --listen 127.0.0.1:710$i \
      --authority custody/authority/authority.pub --organisations-only
  harbour node run --dir nodes/node$i > node$i.log 2>&1 &
  echo $! > node$i.pid
done
for i in 1 2 3; do wait_for grep -q listening node$i.log; done
harbour custody add-node --home custody nodes/node{1,2,3}/descriptor.json

# 3. Approval keys, encrypted under $HARBOUR_APPROVER_PASSPHRASE (one here for
#    brevity; each person keeps their own): alice and carol are the admins, bob
#    and dave approve withdrawals.
ALICE=$(harbour approver-key new --out alice.key --json | json '["public_key"]')
CAROL=$(harbour approver-key new --out carol.key --json | json '["public_key"]')
BOB=$(harbour approver-key new --out bob.key --json | json '["public_key"]')
DAVE=$(harbour approver-key new --out dave.key --json | json '["public_key"]')

# 4. The organisation's genesis, enrolled on every node: two admins, and every
#    later change needs its proposer and one other admin. It prints both tokens.
harbour custody bootstrap --home custody --org "Example Custodian" \
    --admin alice:$ALICE --admin carol:$CAROL --quorum 1 --asset ETH --json > genesis.json
GENESIS=$(json '["genesis"]' < genesis.json)
ALICE_TOKEN=$(json '["credentials"][0]["token"]' < genesis.json)
CAROL_TOKEN=$(json '["credentials"][1]["token"]' < genesis.json)

# 5. The service: the REST API and the signing pipeline. The commands below act
#    as alice, with her token.
harbour custody serve --home custody > serve.log 2>&1 &
echo $! > serve.pid
export HARBOUR_TOKEN=$ALICE_TOKEN
wait_for harbour org show

# 6. Every change to the organisation is proposed by one admin and signed by
#    both; `harbour approve` shows what the entry's bytes change before it signs.
harbour governance trust $GENESIS
as_carol() { HARBOUR_TOKEN=$CAROL_TOKEN "$@"; }
as_carol harbour governance trust $GENESIS
propose() {   # propose a change as alice, then sign it as alice and as carol
  tx=$("$@" --json | json '["id"]')
  harbour approve $tx --key alice.key --yes
  as_carol harbour approve $tx --key carol.key --yes
}
propose harbour user create bob --role approver --approval-key $BOB
propose harbour user create dave --role approver --approval-key $DAVE
propose harbour user create frank --role initiator
for user in bob dave frank; do   # their API tokens (shown once)
  harbour user credential $user --json | json '["token"]' > $user.token
done

# 7. A 2-of-3 vault: the key is generated on the nodes, and its binding (the key,
#    each node's signed statement that it holds it) is signed by both admins.
propose harbour vault create treasury --threshold 2
ADDRESS=$(harbour address new --vault treasury --json | json '["address"]')
harbour dev fund $ADDRESS --amount 5000000000000000000   # 5 ETH from the development chain

# 8. The policy, by the users' names: ETH up to 10 ETH needs bob and dave.
cat > policy.json <<'POLICY'
{
  "rules": [
    {
      "name": "eth-two-approvers",
      "match": {"assets": ["ETH"], "amount": {"max": "10000000000000000000"}},
      "action": "require_approval",
      "approvals": {"combine": "all", "groups": [{"name": "treasury", "members": ["bob", "dave"], "threshold": 2}]}
    }
  ]
}
POLICY
propose harbour policy propose policy.json
harbour governance push --nodes nodes/node1/descriptor.json,nodes/node2/descriptor.json,nodes/node3/descriptor.json

# 9. A withdrawal as frank, approved by bob and dave, signed by the nodes and
#    confirmed on chain.
TX=$(HARBOUR_TOKEN=$(cat frank.token) harbour withdraw --vault treasury --asset ETH \
    --to 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed --amount 1000000000000000000 --json | json '["id"]')
harbour status $TX                                       # needs 2 more from treasury: bob, dave
HARBOUR_TOKEN=$(cat bob.token) harbour approve $TX --key bob.key --yes
HARBOUR_TOKEN=$(cat dave.token) harbour approve $TX --key dave.key --yes
harbour status $TX --wait

# 10. The audit: the withdrawal's inclusion proof against the signed head, and
#     the whole log recomputed from the database.
SIZE=$(harbour audit head --json | json '["tree_size"]')
harbour audit verify-proof $((SIZE - 1)) --audit-key custody/audit.pub   # the newest event: the confirmation
harbour audit verify --home custody
harbour custody status --home custody   # nodes (reachable, safe), chain, database, withdrawals by state
