"""`ControlStore`: the control store assembled from its rooms.

Each room is a class of one file holding what one kind of record needs (its reads, its writes and their
checks); a room builds on the rooms it needs (arrows in docs/architecture.md), all of them on
`StoreBase` (the engine, the write transaction and the audit append).
"""

from __future__ import annotations

from resources.control_store.alert_room import AlertRoom
from resources.control_store.audit_room import AuditRoom
from resources.control_store.key_room import KeyRoom
from resources.control_store.lock_room import LockRoom
from resources.control_store.param_room import ParamRoom
from resources.control_store.request_room import RequestRoom
from resources.control_store.ticket_room import TicketRoom
from resources.control_store.version_room import VersionRoom


class ControlStore(AuditRoom, RequestRoom, ParamRoom, VersionRoom, LockRoom, TicketRoom, KeyRoom, AlertRoom):
    """Months' lifecycle state with serialized, audited writes."""
