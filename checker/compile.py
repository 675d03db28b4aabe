"""Compile a model's z3 guards, effects and predicates to vectorised NumPy code, once.

The generated Python works on a block of packed states at a time (an (n, words) uint64
array): it extracts the fields the guards read, evaluates every guard over the block
(sub-terms shared between guards are computed once), and for each action builds the
successors of the states where its guard holds by rewriting the written fields' bits.
Predicates (invariants, witnesses) compile the same way to a boolean vector.

Only a small, explicit set of z3 constructs is supported; anything else is rejected at
start-up with the construct and the action or predicate it appeared in.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import z3

from model.lang import Model, checkpoint
from model.lang.fields import Field
from model.lang.schema import Slot

SUPPORTED = (
    "and, or, not, implies, xor, ==, !=, distinct, <, <=, >, >=, +, -, *, "
    "div and mod by a positive constant, if-then-else, boolean and integer constants, fields"
)

_COMPARE = {
    z3.Z3_OP_EQ: "==",
    z3.Z3_OP_LE: "<=",
    z3.Z3_OP_LT: "<",
    z3.Z3_OP_GE: ">=",
    z3.Z3_OP_GT: ">",
}


class CompileError(Exception):
    """A z3 construct the compiler does not translate."""


Expand = Callable[[np.ndarray], list[tuple[int, np.ndarray, np.ndarray]]]
Predicate = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Dialect:
    """How boolean connectives are written: NumPy arrays or plain Python values."""

    true: str
    false: str
    conj: str  # joins conjuncts
    disj: str  # joins disjuncts
    neg: str  # format of a negation
    ite: str  # format of if-then-else: {0} condition, {1} then, {2} else
    xor: str


VECTOR = _Dialect("_T", "_F", " & ", " | ", "(~{0})", "_where({0}, {1}, {2})", "({0} ^ {1})")
SCALAR = _Dialect("True", "False", " and ", " or ", "(not {0})", "({1} if {0} else {2})", "({0} != {1})")


class _Emitter:
    """Translates z3 terms to Python expressions over named field values, in a dialect."""

    def __init__(self, fields: dict[str, Field], where: str, dialect: _Dialect = VECTOR,
                 memo: dict[int, str] | None = None) -> None:
        self.fields = fields
        self.where = where
        self.d = dialect
        self.temps: dict[int, str] = {}  # z3 ast id -> temporary name, for shared sub-terms
        # z3 ast id -> its translation: z3 shares sub-terms between guards, so each is
        # walked once (emitters sharing a memo name fields the same way)
        self.memo: dict[int, str] = {} if memo is None else memo

    def expr(self, t: z3.ExprRef, field_ref: Callable[[Field], str]) -> str:
        tid = t.get_id()
        if tid in self.temps:
            return self.temps[tid]
        done = self.memo.get(tid)
        if done is None:
            done = self.memo[tid] = self._expr(t, field_ref)
        return done

    def _expr(self, t: z3.ExprRef, field_ref: Callable[[Field], str]) -> str:
        d = self.d
        if z3.is_true(t):
            return d.true
        if z3.is_false(t):
            return d.false
        if z3.is_int_value(t):
            return str(t.as_long())
        if z3.is_const(t) and t.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            f = self.fields.get(t.decl().name())
            if f is None:
                raise CompileError(f"{self.where}: {t} is not a field of the model")
            return field_ref(f)
        kind = t.decl().kind()
        args = [self.expr(a, field_ref) for a in t.children()]
        if kind == z3.Z3_OP_AND:
            return "(" + d.conj.join(args) + ")" if args else d.true
        if kind == z3.Z3_OP_OR:
            return "(" + d.disj.join(args) + ")" if args else d.false
        if kind == z3.Z3_OP_NOT:
            return d.neg.format(args[0])
        if kind == z3.Z3_OP_IMPLIES:
            return "(" + d.neg.format(args[0]) + d.disj + args[1] + ")"
        if kind == z3.Z3_OP_XOR:
            return d.xor.format(*args)
        if kind == z3.Z3_OP_ITE:
            return d.ite.format(*args)
        if kind == z3.Z3_OP_DISTINCT:
            pairs = [f"({a} != {b})" for i, a in enumerate(args) for b in args[i + 1:]]
            return "(" + d.conj.join(pairs) + ")" if pairs else d.true
        if kind in (z3.Z3_OP_ADD, z3.Z3_OP_MUL, z3.Z3_OP_SUB):
            op = {z3.Z3_OP_ADD: " + ", z3.Z3_OP_MUL: " * ", z3.Z3_OP_SUB: " - "}[kind]
            return "(" + op.join(args) + ")" if args else "0"
        if kind in _COMPARE and len(args) == 2:
            return f"({args[0]} {_COMPARE[kind]} {args[1]})"
        if kind == z3.Z3_OP_UMINUS:
            return f"(-{args[0]})"
        if kind in (z3.Z3_OP_IDIV, z3.Z3_OP_MOD):
            divisor = t.children()[1]
            if not (z3.is_int_value(divisor) and divisor.as_long() > 0):
                raise CompileError(
                    f"{self.where}: division or modulo by {divisor}, which is not a positive "
                    f"constant; supported: {SUPPORTED}"
                )
            op = "//" if kind == z3.Z3_OP_IDIV else "%"
            return f"({args[0]} {op} {args[1]})"
        raise CompileError(
            f"{self.where}: cannot compile z3 construct {t.decl().name()!r} in {t}; "
            f"supported: {SUPPORTED}"
        )


def _shared_subterms(terms: Sequence[z3.ExprRef]) -> list[z3.ExprRef]:
    """Compound sub-terms used more than once across `terms`, children before parents."""
    uses: dict[int, int] = {}
    order: list[z3.ExprRef] = []
    seen: set[int] = set()

    def visit(t: z3.ExprRef) -> None:
        stack: list[tuple[z3.ExprRef, bool]] = [(t, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            tid = node.get_id()
            uses[tid] = uses.get(tid, 0) + 1
            if tid in seen or node.num_args() == 0:
                continue
            seen.add(tid)
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(node.children()))

    for t in terms:
        visit(t)
    return [t for t in order if uses[t.get_id()] > 1]


def _used_fields(terms: Sequence[z3.ExprRef], fields: dict[str, Field]) -> list[Field]:
    from model.lang.exprs import free_constants

    names: dict[str, Field] = {}
    for t in terms:
        for c in free_constants(t):
            names[c.decl().name()] = fields[c.decl().name()]
    return sorted(names.values(), key=lambda f: f.index)


def _extract(f: Field, slot: Slot) -> str:
    word = f"_w{slot.word}"
    if slot.width == 0:
        raw = "np.zeros(_n, dtype=np.int64)"
    else:
        raw = f"(({word} >> {slot.shift}) & {slot.mask}).view(np.int64)"
    if f.domain.is_bool():
        return f"({raw} != 0)"
    return f"({raw} + {f.domain.lo})" if f.domain.lo else raw


def _header(words: int) -> list[str]:
    lines = ["    _n = S.shape[0]"]
    lines += [f"    _w{w} = S[:, {w}]" for w in range(words)]
    return lines


@dataclass
class Compiled:
    """The compiled form of one model: `expand` and named predicates."""

    model: Model
    words: int
    expand: Expand
    source: str


_COMPILED: weakref.WeakKeyDictionary[Model, Compiled] = weakref.WeakKeyDictionary()


def compile_model(model: Model) -> Compiled:
    """The successor function of `model`, generated and loaded once per model."""
    compiled = _COMPILED.get(model)
    if compiled is None:
        compiled = _COMPILED[model] = _compile_model(model)
    return compiled


def _compile_model(model: Model) -> Compiled:
    schema = model.schema
    fields = dict(schema.by_name)
    guards = [a.guard for a in model.actions]
    shared = _shared_subterms(guards)
    effects = [t for a in model.actions for _, t in a.effect]
    lines = ["def expand(S):", *_header(schema.words)]
    for f in _used_fields(guards + effects, fields):
        lines.append(f"    f{f.index} = {_extract(f, schema.slots[f.index])}")
    emit = _Emitter(fields, "guards")
    for i, t in enumerate(shared):
        code = emit.expr(t, lambda f: f"f{f.index}")
        emit.temps[t.get_id()] = f"t{i}"
        lines.append(f"    t{i} = {code}")
    lines.append("    out = []")
    memo: dict[int, str] = {}  # shared by the effects, which all read fields as s<index>
    for a in model.actions:
        checkpoint()
        emit.where = f"guard of action {a.key}"
        lines.append(f"    # {a.key}")
        lines.append(f"    idx = _nonzero({emit.expr(a.guard, lambda f: f'f{f.index}')}, _n)")
        lines.append("    if idx.size:")
        lines.extend("        " + s for s in _effect_lines(model, a.effect, f"effect of action {a.key}", memo))
        lines.append(f"        out.append(({a.id}, idx, N))")
    lines.append("    return out")
    source = "\n".join(lines) + "\n"
    namespace = _namespace()
    exec(compile(source, f"<compiled {model.name}>", "exec"), namespace)
    return Compiled(model, schema.words, namespace["expand"], source)


def _effect_lines(model: Model, effect: Sequence[tuple[Field, z3.ExprRef]], where: str,
                  memo: dict[int, str]) -> list[str]:
    schema = model.schema
    fields = dict(schema.by_name)
    emit = _Emitter(fields, where, memo=memo)
    lines = ["N = S[idx]"]
    reads = _used_fields([t for _, t in effect], fields)
    for f in reads:
        lines.append(f"s{f.index} = f{f.index}[idx]")
    per_word: dict[int, tuple[int, int, list[str]]] = {}
    for f, term in effect:
        slot = schema.slots[f.index]
        clear, setbits, parts = per_word.get(slot.word, (0, 0, []))
        clear |= slot.mask << slot.shift
        if z3.is_int_value(term) or z3.is_true(term) or z3.is_false(term):
            value = 1 if z3.is_true(term) else 0 if z3.is_false(term) else term.as_long()
            setbits |= (value - f.domain.lo) << slot.shift
        elif slot.width:
            code = emit.expr(term, lambda g: f"s{g.index}")
            offset = f" - {f.domain.lo}" if f.domain.lo else ""
            parts.append(f"(_u({code}{offset}) << {slot.shift})")
        per_word[slot.word] = (clear, setbits, parts)
    for word, (clear, setbits, parts) in sorted(per_word.items()):
        keep = ~clear & 0xFFFF_FFFF_FFFF_FFFF
        value = " | ".join([f"(N[:, {word}] & {keep})", *([str(setbits)] if setbits else []), *parts])
        lines.append(f"N[:, {word}] = {value}")
    return lines


def compile_predicate(model: Model, name: str, term: z3.BoolRef) -> Predicate:
    """A vectorised version of `term`: states (n, words) -> bool[n]."""
    schema = model.schema
    fields = dict(schema.by_name)
    lines = ["def predicate(S):", *_header(schema.words)]
    for f in _used_fields([term], fields):
        lines.append(f"    f{f.index} = {_extract(f, schema.slots[f.index])}")
    emit = _Emitter(fields, f"predicate {name}")
    lines.append(f"    return _full({emit.expr(term, lambda f: f'f{f.index}')}, _n)")
    namespace = _namespace()
    exec(compile("\n".join(lines) + "\n", f"<predicate {name}>", "exec"), namespace)
    return namespace["predicate"]


def _nonzero(mask: np.ndarray | np.bool_, n: int) -> np.ndarray:
    if np.ndim(mask) == 0:
        return np.arange(n) if bool(mask) else np.empty(0, dtype=np.intp)
    return np.flatnonzero(mask)


def _full(mask: np.ndarray | np.bool_, n: int) -> np.ndarray:
    if np.ndim(mask) == 0:
        return np.full(n, bool(mask))
    return np.asarray(mask, dtype=bool)


def _u(values: np.ndarray | int | bool) -> np.ndarray:
    return np.asarray(values).astype(np.uint64)


def _namespace() -> dict[str, object]:
    return {
        "np": np,
        "_T": np.True_,
        "_F": np.False_,
        "_where": np.where,
        "_nonzero": _nonzero,
        "_full": _full,
        "_u": _u,
    }
