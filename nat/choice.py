"""A set of outcomes the kernel may produce, with a deterministic default.

Wherever the kernel draws a random number (the start of a port search, `--random`,
`--random-fully`, the 6.1 DNAT range start), the model cannot say which value it will pick,
only which values it *could* pick. A `Choice` is that set (kernel-semantics.md §8): the
differential checker asks `contains(observed)` and then adopts the kernel's value; the model
on its own follows `default`. A Choice with exactly one member is "determined".

Membership is a rule (a predicate) rather than a stored set, because the sets are often large
("any free port in 1024-65535"). A rule may consult a table: such a Choice answers for the
table as it was when the Choice was made, so ask it before the table changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class NotAllowed(ValueError):
    """An observed outcome is outside the set the model allows."""


@dataclass(frozen=True)
class Choice(Generic[T]):
    """Allowed outcomes: `contains(x)` decides membership, `default` is the model's own pick.

    `members` lists every member when the set is known and small (else None). Build one with
    `Choice.only`, `Choice.among` or `Choice.where`.
    """

    default: T
    rule: Callable[[T], bool] = field(compare=False, repr=False)
    description: str
    members: tuple[T, ...] | None = None

    def __post_init__(self) -> None:
        if not self.rule(self.default):
            raise ValueError(f"the default {self.default!r} is not in its own choice "
                             f"({self.description})")

    @classmethod
    def only(cls, value: T, why: str = "") -> Choice[T]:
        """The determined case: exactly one outcome."""
        text = f"exactly {value}" + (f" ({why})" if why else "")
        return cls(value, lambda x: x == value, text, (value,))

    @classmethod
    def among(cls, values: Iterable[T], description: str = "",
              default: T | None = None) -> Choice[T]:
        """A finite set listed in full; the default is `default` or the first value."""
        members = tuple(dict.fromkeys(values))
        if not members:
            raise ValueError("a choice needs at least one member")
        chosen = members[0] if default is None else default
        allowed = frozenset(members)
        text = description or "one of " + ", ".join(str(m) for m in members)
        return cls(chosen, lambda x: x in allowed, text, members)

    @classmethod
    def where(cls, rule: Callable[[T], bool], default: T, description: str) -> Choice[T]:
        """A set given by a rule, too large to list."""
        return cls(default, rule, description, None)

    def contains(self, value: T) -> bool:
        return self.rule(value)

    def describe(self) -> str:
        return self.description

    def enumerate(self) -> tuple[T, ...] | None:
        """Every member, when the set is small enough to have been listed; else None."""
        return self.members

    @property
    def determined(self) -> bool:
        return self.members is not None and len(self.members) == 1

    def adopt(self, observed: T) -> T:
        """The observed outcome, after checking the model allows it."""
        if not self.contains(observed):
            raise NotAllowed(f"{observed} is not allowed: expected {self.description}")
        return observed

    def union(self, other: Choice[T], description: str = "") -> Choice[T]:
        """Either set; the default stays this one's."""
        members = None
        if self.members is not None and other.members is not None:
            members = tuple(dict.fromkeys(self.members + other.members))
        first, second = self.rule, other.rule
        text = description or f"{self.description}, or {other.description}"
        return Choice(self.default, lambda x: first(x) or second(x), text, members)

    def __str__(self) -> str:
        return self.description
