"""A read position in a rule's tokens, shared by the iptables and nft readers.

Both readers walk a list of tokens one at a time, look one or two ahead, and word every
refusal as one line naming the input line: `Cursor` is that walk, `RuleCursor` adds the line
for the messages. The iptables reader's tokens are the words of one command line (split as a
POSIX shell does, as iptables-restore's own splitter does); the nft reader's are `Token`s
from its scanner (the shapes nft's flex scanner distinguishes: words, quoted strings and
single-character punctuation), which keep their offsets so a rule can be quoted as written.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

from nat.rules.ast import RuleSyntaxError, UnsupportedRule

T = TypeVar("T")


class Token(NamedTuple):
    """One nft token. `kind`: "word", "string", one of `{};,()|&`, "nl" or "eof"."""

    kind: str
    text: str
    lineno: int
    start: int     # offsets into the text, to quote a rule as written
    end: int


class Cursor(Generic[T]):
    """A position in `items`; past the last item, `peek` and `next` give `end`."""

    __slots__ = ("items", "pos", "end")

    def __init__(self, items: list[T], end: T) -> None:
        self.items = items
        self.pos = 0
        self.end = end

    def peek(self, ahead: int = 0) -> T:
        i = self.pos + ahead
        return self.items[i] if i < len(self.items) else self.end

    def next(self) -> T:
        item = self.peek()
        if self.pos < len(self.items):
            self.pos += 1
        return item

    def at_end(self) -> bool:
        return self.pos >= len(self.items)

    def push(self, item: T) -> None:
        """Put `item` at the current position (read next)."""
        self.items.insert(self.pos, item)


class RuleCursor(Cursor[T]):
    """A cursor over the tokens of one rule, which words errors for the rule's line."""

    __slots__ = ("lineno", "line")

    def __init__(self, items: list[T], end: T, lineno: int, line: str) -> None:
        super().__init__(items, end)
        self.lineno = lineno
        self.line = line

    def syntax(self, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(self.lineno, message, self.line)

    def unsupported(self, construct: str) -> UnsupportedRule:
        return UnsupportedRule(self.lineno, construct, self.line)
