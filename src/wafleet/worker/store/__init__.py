"""The worker's reads and writes (SQLAlchemy Core, for speed), all fenced by the lease.

A `Fence` names the worker and the lease epoch a bot was started with; every write a bot
makes to its tenant's rows is conditioned on the lease still being (worker, epoch), and
write functions return their result instead of raising, so they can share a batch of the
`WriteBatcher`. Most writes are `MergeableWrite`s: all of one class in a batch run as one
set of statements.

- `fencing`: the tables, `Fence`, and what the merged writes share (lease groups, the
  lease test in SQL, chunked UPDATEs of messages by (tenant id, wa_id));
- `sessions`: session transitions with their timeline events, and the tenant/session
  reads a bot restores itself from;
- `inbound`: storing inbound messages and completing them (their reply into the outbox);
- `outbound`: the outbox, its SENT/FAILED marks, receipts and the backlog count.

Callers use this package's names (``store.X``), not the modules'.
"""

from wafleet.worker.store.fencing import CE, ML, TL, TN, WS, Fence
from wafleet.worker.store.inbound import (
    CompleteInbound,
    Inbound,
    InsertInbound,
    Outcome,
    Stored,
    complete_inbound_fn,
    insert_inbound_fn,
    received_inbound,
    reply_wa_id,
)
from wafleet.worker.store.outbound import (
    ApplyReceipts,
    MarkSent,
    MarkSentByWaId,
    apply_receipts_fn,
    count_backlog,
    mark_out_failed_fn,
    mark_sent_fn,
    pending_outbox,
)
from wafleet.worker.store.sessions import (
    EventRecord,
    UpdateSession,
    load_session,
    load_tenant,
    update_session_fn,
)

__all__ = [
    "CE",
    "ML",
    "TL",
    "TN",
    "WS",
    "ApplyReceipts",
    "CompleteInbound",
    "EventRecord",
    "Fence",
    "Inbound",
    "InsertInbound",
    "MarkSent",
    "MarkSentByWaId",
    "Outcome",
    "Stored",
    "UpdateSession",
    "apply_receipts_fn",
    "complete_inbound_fn",
    "count_backlog",
    "insert_inbound_fn",
    "load_session",
    "load_tenant",
    "mark_out_failed_fn",
    "mark_sent_fn",
    "pending_outbox",
    "received_inbound",
    "reply_wa_id",
    "update_session_fn",
]
