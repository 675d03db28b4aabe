"""The ordered schema: where each field lives in a packed state.

A state is one value per field. It is stored packed: each field takes the bits its domain
needs (a one-value domain takes none), fields are laid out in declaration order into
64-bit words, and a field never straddles two words. Most small models fit one word, so
a state is a single uint64; larger ones use a few words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ModelError
from .fields import Field

WORD_BITS = 64


@dataclass(frozen=True)
class Slot:
    """Where one field is stored: word number, bit shift and bit width."""

    word: int
    shift: int
    width: int

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1


class Schema:
    """Ordered fields and their packing into words."""

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields: tuple[Field, ...] = tuple(fields)
        self.by_name: dict[str, Field] = {}
        for f in self.fields:
            if f.name in self.by_name:
                raise ModelError(f"two fields are named {f.name!r}: field names must be unique")
            self.by_name[f.name] = f
        slots: list[Slot] = []
        word, used = 0, 0
        for f in self.fields:
            width = (f.domain.size - 1).bit_length()
            if width > WORD_BITS:
                raise ModelError(f"field {f.name!r} needs {width} bits; at most {WORD_BITS} fit a word")
            if used + width > WORD_BITS:
                word, used = word + 1, 0
            slots.append(Slot(word, used, width))
            used += width
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.words = word + 1
        self.bits = sum(s.width for s in slots)

    def __len__(self) -> int:
        return len(self.fields)

    def pack(self, values: Mapping[Field, int] | Sequence[int]) -> tuple[int, ...]:
        """Pack one value per field (a mapping, or a sequence in schema order) into words."""
        if isinstance(values, Mapping):
            seq = [values[f] for f in self.fields]
        else:
            seq = list(values)
        if len(seq) != len(self.fields):
            raise ValueError(f"expected {len(self.fields)} values, got {len(seq)}")
        words = [0] * self.words
        for f, slot, v in zip(self.fields, self.slots, seq, strict=True):
            if not f.domain.contains(v):
                raise ValueError(f"{f.name} = {v} is outside {f.domain.describe()}")
            words[slot.word] |= (v - f.domain.lo) << slot.shift
        return tuple(words)

    def unpack(self, words: Sequence[int]) -> tuple[int, ...]:
        """The value of each field, in schema order."""
        return tuple(
            ((int(words[s.word]) >> s.shift) & s.mask) + f.domain.lo
            for f, s in zip(self.fields, self.slots, strict=True)
        )

    def describe(self, words: Sequence[int]) -> dict[str, str]:
        """Field name -> printed value."""
        return {f.name: f.label(v) for f, v in zip(self.fields, self.unpack(words), strict=True)}
