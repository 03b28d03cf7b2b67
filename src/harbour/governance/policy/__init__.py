"""Transaction policy: ordered rules, the first that matches decides, and default deny.

One concept in three parts (the vocabulary, the document, the decision), each in
modules a reader can check on their own (format and semantics in ``docs/policy.md``):

- :mod:`.model`: the facts of a transaction, the conditions, rules and decisions,
  with :mod:`.approvals` for the approval groups a rule can require (the one part
  that outlives a decision: the service counts approvals against it later);
- :mod:`.document`: the JSON document, read strictly and written canonically
  (:class:`Policy`), with every input check in :mod:`.checks`;
- :mod:`.engine`: :func:`evaluate` and :func:`explain`, pure functions of the
  policy, the transaction, its time and the history.

The modules import one another in that order only (checks, approvals, model,
document, engine), so there is no circle to untangle.

Callers import from here; the modules are an arrangement for readers, not an API.
"""

from harbour.governance.policy.approvals import COMBINES, MAX_GROUPS, ApprovalGroup, ApprovalRequirement, Combine
from harbour.governance.policy.checks import MAX_AMOUNT, MAX_LIST, MAX_NAME_LENGTH, PolicyError
from harbour.governance.policy.document import (
    FORMAT_VERSION,
    MAX_COUNT,
    MAX_DESCRIPTION_LENGTH,
    MAX_RULES,
    MAX_WINDOW_SECONDS,
    Policy,
)
from harbour.governance.policy.engine import evaluate, explain
from harbour.governance.policy.model import (
    ACTIONS,
    DAYS,
    DESTINATION_KINDS,
    PERS,
    Action,
    AmountRange,
    CountLimit,
    Decision,
    DestinationCondition,
    DestinationKind,
    Match,
    PastTx,
    Per,
    Rule,
    RuleTrace,
    Sweep,
    TimeWindow,
    TxFacts,
    Velocity,
)

__all__ = [
    "ACTIONS",
    "COMBINES",
    "DAYS",
    "DESTINATION_KINDS",
    "FORMAT_VERSION",
    "MAX_AMOUNT",
    "MAX_COUNT",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_GROUPS",
    "MAX_LIST",
    "MAX_NAME_LENGTH",
    "MAX_RULES",
    "MAX_WINDOW_SECONDS",
    "PERS",
    "Action",
    "AmountRange",
    "ApprovalGroup",
    "ApprovalRequirement",
    "Combine",
    "CountLimit",
    "Decision",
    "DestinationCondition",
    "DestinationKind",
    "Match",
    "PastTx",
    "Per",
    "Policy",
    "PolicyError",
    "Rule",
    "RuleTrace",
    "Sweep",
    "TimeWindow",
    "TxFacts",
    "Velocity",
    "evaluate",
    "explain",
]
