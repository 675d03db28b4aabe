"""Two-phase commit, after TLA+ Examples' TwoPhase.tla (Lamport), with resource managers RM.

TLC on TwoPhase.cfg (3 RMs) reports 288 distinct states, 1146 states generated and a
state-graph depth of 11 (TLC counts the initial state as depth 1). `msgs` is a set of
records, as in the spec: `[type: {"Prepared"}, rm: RM] \\cup [type: {"Commit", "Abort"}]`.
"""

from __future__ import annotations

import z3

from invariants import Invariant, Kind
from model.lang import EnumDomain, Model, ModelBuilder, records

RM_STATE = EnumDomain("rmState", ["working", "prepared", "committed", "aborted"])
TM_STATE = EnumDomain("tmState", ["init", "committed", "aborted"])


def build(rms: int = 3) -> Model:
    b = ModelBuilder("TwoPhase", kernel_docs=False)
    rm = [f"r{i + 1}" for i in range(rms)]
    rm_state = b.family("rmState", rm, RM_STATE, "working")
    tm_state = b.field("tmState", TM_STATE, "init")
    tm_prepared = b.set_field("tmPrepared", rm)
    msgs = b.set_field("msgs", records(type=["Prepared"], rm=rm) | records(type=["Commit", "Abort"]))
    b.part("twophase", rm_state)
    tm_init = tm_state.var == TM_STATE.init
    b.add("tm_commit", "TM", z3.And(tm_init, tm_prepared.is_full()),
          {tm_state: "committed", **msgs.add(type="Commit")}, "TMCommit")
    b.add("tm_abort", "TM", tm_init, {tm_state: "aborted", **msgs.add(type="Abort")}, "TMAbort")
    for i, r in enumerate(rm):
        working = rm_state[r].var == RM_STATE.working
        b.add("tm_rcv_prepared", "TM", z3.And(tm_init, msgs.contains(type="Prepared", rm=r)),
              tm_prepared.add(r), f"TMRcvPrepared({r})", rm=i)
        b.add("rm_prepare", r, working, {rm_state[r]: "prepared", **msgs.add(type="Prepared", rm=r)},
              f"RMPrepare({r})", rm=i)
        b.add("rm_choose_to_abort", r, working, {rm_state[r]: "aborted"}, f"RMChooseToAbort({r})", rm=i)
        b.add("rm_rcv_commit", r, msgs.contains(type="Commit"), {rm_state[r]: "committed"}, f"RMRcvCommitMsg({r})",
              rm=i)
        b.add("rm_rcv_abort", r, msgs.contains(type="Abort"), {rm_state[r]: "aborted"}, f"RMRcvAbortMsg({r})", rm=i)
    return b.build("TLA+ Examples TwoPhase")


def _consistent(m: Model) -> z3.BoolRef:
    states = [s.var for s in m.parts["twophase"]]
    return z3.Not(z3.And(z3.Or(*[s == RM_STATE.aborted for s in states]),
                         z3.Or(*[s == RM_STATE.committed for s in states])))


TC_CONSISTENT = Invariant(
    "TCConsistent", Kind.ALWAYS, "no RM has committed while another has aborted",
    "TLA+ Examples, transaction_commit/TCommit.tla", ("twophase",), _consistent,
)
PROPERTIES = (TC_CONSISTENT,)
EXPECT = {"result": "pass", "complete": True, "distinct": 288, "depth": 10}
