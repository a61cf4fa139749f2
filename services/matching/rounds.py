"""Scheduling a batch into rounds so that effects on one subject follow record order.

Requests of one batch run together (one embedder call, one gallery call per op and round), but a
request must see the effects of every earlier request of the batch on the same subject, and none of the
later ones: `delete alice, enroll alice, verify alice` leaves alice enrolled and verifies her. Ops on
different subjects commute, and so do two enrolments (or two deletes, or two reads) of one subject, so a
typical poll is one round; only a subject whose writes and reads interleave needs more. Identify reads a
whole tenant: it waits for the tenant's earlier writes, and a later write waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from twinstream.contracts import ImageRequest, Op

_WRITES = frozenset({Op.ENROLL, Op.DELETE})


@dataclass
class _Marks:
    """The latest round in which each kind of op touched one subject (or a tenant), -1 for none."""

    by_op: dict[Op, int] = field(default_factory=dict)

    def after(self, *ops: Op) -> int:
        return max((self.by_op.get(op, -1) for op in ops), default=-1)

    def note(self, op: Op, round_: int) -> None:
        self.by_op[op] = max(self.by_op.get(op, -1), round_)


def schedule(requests: Sequence[ImageRequest]) -> list[int]:
    """The round of each request: one more than the latest earlier request it must follow."""
    subjects: dict[tuple[str, str], _Marks] = {}
    tenants: dict[str, _Marks] = {}
    rounds = []
    for request in requests:
        tenant = tenants.setdefault(request.tenant, _Marks())
        if request.op is Op.IDENTIFY:
            round_ = 1 + tenant.after(Op.ENROLL, Op.DELETE)
        else:
            subject = subjects.setdefault((request.tenant, request.subject), _Marks())
            if request.op is Op.VERIFY:
                round_ = 1 + subject.after(Op.ENROLL, Op.DELETE)
            else:
                other = Op.DELETE if request.op is Op.ENROLL else Op.ENROLL
                round_ = 1 + max(subject.after(other, Op.VERIFY), tenant.after(Op.IDENTIFY))
            subject.note(request.op, round_)
        tenant.note(request.op, round_)
        rounds.append(round_)
    return rounds
