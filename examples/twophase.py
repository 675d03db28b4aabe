"""Two-phase commit, after TLA+ Examples' TwoPhase.tla (Lamport), with resource managers RM.

TLC on TwoPhase.cfg (3 RMs) reports 288 distinct states, 1146 states generated and a
state-graph depth of 11 (TLC counts the initial state as depth 1). Messages are never
removed, so `msgs` is one bool per possible message.
"""

from __future__ import annotations

import z3

from invariants import Invariant, Kind
from model.lang import BOOL, EnumDomain, Model, ModelBuilder, Step, models

RM_STATE = EnumDomain("rmState", ["working", "prepared", "committed", "aborted"])
TM_STATE = EnumDomain("tmState", ["init", "committed", "aborted"])


class TwoPhase:
    def __init__(self, b: ModelBuilder, rms: int) -> None:
        labels = [f"r{i + 1}" for i in range(rms)]
        self.rms = range(rms)
        self.rm_state = b.family("rmState", labels, RM_STATE, "working")
        self.tm_state = b.field("tmState", TM_STATE, "init")
        self.tm_prepared = b.family("tmPrepared", labels, BOOL, False)
        self.msg_prepared = b.family("msgPrepared", labels, BOOL, False)
        self.msg_commit = b.field("msgCommit", BOOL, False)
        self.msg_abort = b.field("msgAbort", BOOL, False)

    @models("TMRcvPrepared")
    def tm_rcv_prepared(self, rm: int) -> Step:
        """TMRcvPrepared(rm): the TM records a Prepared message from rm."""
        guard = z3.And(self.tm_state.var == TM_STATE.init, self.msg_prepared[rm].var)
        return Step(f"TMRcvPrepared(r{rm + 1})", guard, {self.tm_prepared[rm]: True})

    @models("TMCommit")
    def tm_commit(self) -> Step:
        """TMCommit: every RM is prepared, the TM commits and broadcasts Commit."""
        guard = z3.And(self.tm_state.var == TM_STATE.init, *[p.var for p in self.tm_prepared])
        return Step("TMCommit", guard, {self.tm_state: TM_STATE.committed, self.msg_commit: True})

    @models("TMAbort")
    def tm_abort(self) -> Step:
        """TMAbort: the TM spontaneously aborts and broadcasts Abort."""
        guard = self.tm_state.var == TM_STATE.init
        return Step("TMAbort", guard, {self.tm_state: TM_STATE.aborted, self.msg_abort: True})

    @models("RMPrepare")
    def rm_prepare(self, rm: int) -> Step:
        """RMPrepare(rm): a working RM prepares and sends Prepared."""
        guard = self.rm_state[rm].var == RM_STATE.working
        return Step(f"RMPrepare(r{rm + 1})", guard,
                    {self.rm_state[rm]: RM_STATE.prepared, self.msg_prepared[rm]: True})

    @models("RMChooseToAbort")
    def rm_choose_to_abort(self, rm: int) -> Step:
        """RMChooseToAbort(rm): a working RM aborts on its own."""
        guard = self.rm_state[rm].var == RM_STATE.working
        return Step(f"RMChooseToAbort(r{rm + 1})", guard, {self.rm_state[rm]: RM_STATE.aborted})

    @models("RMRcvCommitMsg")
    def rm_rcv_commit(self, rm: int) -> Step:
        """RMRcvCommitMsg(rm): rm receives Commit."""
        return Step(f"RMRcvCommitMsg(r{rm + 1})", self.msg_commit.var, {self.rm_state[rm]: RM_STATE.committed})

    @models("RMRcvAbortMsg")
    def rm_rcv_abort(self, rm: int) -> Step:
        """RMRcvAbortMsg(rm): rm receives Abort."""
        return Step(f"RMRcvAbortMsg(r{rm + 1})", self.msg_abort.var, {self.rm_state[rm]: RM_STATE.aborted})


def build(rms: int = 3) -> Model:
    b = ModelBuilder("TwoPhase")
    tp = TwoPhase(b, rms)
    b.part("twophase", tp)
    b.action(tp.tm_commit, "TM")
    b.action(tp.tm_abort, "TM")
    for rm in tp.rms:
        b.action(tp.tm_rcv_prepared, "TM", rm=rm)
        b.action(tp.rm_prepare, f"r{rm + 1}", rm=rm)
        b.action(tp.rm_choose_to_abort, f"r{rm + 1}", rm=rm)
        b.action(tp.rm_rcv_commit, f"r{rm + 1}", rm=rm)
        b.action(tp.rm_rcv_abort, f"r{rm + 1}", rm=rm)
    return b.build("TLA+ Examples TwoPhase")


def _consistent(m: Model) -> z3.BoolRef:
    tp: TwoPhase = m.parts["twophase"]
    states = [s.var for s in tp.rm_state]
    return z3.Not(z3.And(z3.Or(*[s == RM_STATE.aborted for s in states]),
                         z3.Or(*[s == RM_STATE.committed for s in states])))


TC_CONSISTENT = Invariant(
    "TCConsistent", Kind.ALWAYS, "no RM has committed while another has aborted",
    "TLA+ Examples, transaction_commit/TCommit.tla", ("twophase",), _consistent,
)
