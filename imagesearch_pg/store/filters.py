"""The attribute filter language (spec/filter.md): text -> plain AST -> parameterised SQLAlchemy condition.

Grammar (AND binds tighter than OR)::

    expr    := term ( OR term )*
    term    := factor ( AND factor )*
    factor  := '(' expr ')' | compare
    compare := INTFIELD ( '>' | '>=' | '<' | '<=' | '=' | '!=' ) INTEGER
             | STRFIELD ( '=' | '!=' ) STRING
             | FIELD ( 'in' | 'not in' ) '(' literal ( ',' literal )* ')'

- Fields: int_attr..int_attr4 (32-bit signed integers), str_attr..str_attr4 (text).
- Keywords (AND, OR, in, not in) and field names are case-insensitive (ASCII only: a look-alike such as
  Cyrillic 'а' or the Kelvin sign is not a letter of a keyword). White space (ASCII space, tab, CR, LF,
  VT, FF) is free between tokens and needed only between two words or a word and a number.
- INTEGER: optional sign, decimal digits (leading zeros allowed), -2147483648..2147483647.
- STRING: double-quoted; inside it \\" is a quote and \\\\ a backslash, any other backslash is an error;
  every other character (including new lines) stands for itself.
- An in-list holds literals of the field's type and is never empty.

NULL rule (a picture may have no value for an attribute):
    ``=``, ``>``, ``>=``, ``<``, ``<=`` and ``in`` never match a missing value;
    ``!=`` and ``not in`` DO match a missing value ("not equal to 5" includes "has no value").
In SQL ``!=`` is ``col IS DISTINCT FROM :v`` and ``not in`` is ``col IS NULL OR col NOT IN (:v1, ...)``.
The language has no NOT, so the remaining NULLs (from ``=`` etc.) act as false under AND / OR.

Limits: at most ``MAX_FILTER_LENGTH`` characters (checked before parsing), parentheses nested at most
``MAX_NESTING`` deep (the parser recurses ~3 frames and SQLAlchemy's compiler ~8 frames per level, so 64 levels
stay near 500 frames, well inside Python's default 1000), no NUL characters (PostgreSQL
text cannot hold them) and no lone surrogates (they cannot be encoded for the database).

Every problem raises ``InvalidFilter`` whose message names the 1-based character position, e.g.
``Filter: at position 10, expected a comparison operator (>, >=, <, <=, =, !=, in, not in) after int_attr,
found '~'``. The SQL holds bound parameters only: user text never becomes SQL text.
"""

from __future__ import annotations

import functools

import operator
from dataclasses import dataclass
from typing import Union

import sqlalchemy as sa

from imagesearch_pg.errors import InvalidFilter
from imagesearch_pg.attributes import INT32_MAX, INT32_MIN, INT_ATTRS, STR_ATTRS
from imagesearch_pg.store.tables import pictures

MAX_FILTER_LENGTH = 4096
MAX_NESTING = 64

INT_OPS = (">", ">=", "<", "<=", "=", "!=")
STR_OPS = ("=", "!=")
FIELDS = INT_ATTRS + STR_ATTRS
_WHITESPACE = " \t\r\n\v\f"
_KEYWORDS = ("and", "or", "not", "in")


# ---- AST ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """``field op value``; field is the lower-case column name, value an int or a str matching it."""

    field: str
    op: str
    value: int | str


@dataclass(frozen=True)
class Membership:
    """``field in (values)``, or ``field not in (values)`` when negated."""

    field: str
    values: tuple[int | str, ...]
    negated: bool = False


@dataclass(frozen=True)
class And:
    """Two or more operands. The parser merges nested ANDs, so an operand is never itself an And."""

    operands: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    """Two or more operands. The parser merges nested ORs, so an operand is never itself an Or."""

    operands: tuple["Node", ...]


Node = Union[Comparison, Membership, And, Or]


# ---- tokens ---------------------------------------------------------------------------------------

WORD, INT, STRING, OP, LPAREN, RPAREN, COMMA, END, OTHER = (
    "word", "integer", "string", "operator", "(", ")", ",", "end", "other",
)  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str
    text: str  # as written in the filter
    position: int  # 1-based character position of the first character
    value: int | str | None = None  # the unescaped string; the integer (None when it has over 10 digits)


def _fail(position: int, detail: str) -> InvalidFilter:
    return InvalidFilter(f"Filter: at position {position}, {detail}")


def _show(token: Token) -> str:
    """How a token appears in a message: quoted, truncated, control characters escaped (repr does that)."""
    if token.kind == END:
        return "the end of the filter"
    text = token.text if len(token.text) <= 40 else token.text[:40] + "..."
    return repr(text)


def _is_digit(ch: str) -> bool:
    return len(ch) == 1 and "0" <= ch <= "9"  # ASCII only: str.isdigit() also accepts '١' and '²'


def _is_word_char(ch: str) -> bool:
    # Every character past ASCII counts: a look-alike letter stays inside the word, so the message shows the
    # whole word ("unknown field 'str_аttr'") instead of splitting it at the foreign letter. No Unicode
    # classes: the SQL compiler must lex alike in a database of any locale (sql/0023_filter_words.sql).
    return not ch.isascii() or ch.isalnum() or ch == "_"


class Lexer:
    """Hands out one token at a time, so errors are reported left to right."""

    def __init__(self, text: str):
        self.text = text
        self.i = 0

    def next(self) -> Token:
        text, n = self.text, len(self.text)
        while self.i < n and text[self.i] in _WHITESPACE:
            self.i += 1
        start = self.i
        if start >= n:
            return Token(END, "", start + 1)
        ch = text[start]
        if ch == '"':
            return self._string(start)
        if _is_digit(ch) or (ch in "+-" and _is_digit(text[start + 1 : start + 2])):
            return self._integer(start)
        if _is_word_char(ch):
            end = start
            while end < n and _is_word_char(text[end]):
                end += 1
            self.i = end
            return Token(WORD, text[start:end], start + 1)
        if ch in "<>!" and text.startswith("=", start + 1):
            self.i = start + 2
            return Token(OP, text[start : start + 2], start + 1)
        self.i = start + 1
        if ch in "<>=":
            return Token(OP, ch, start + 1)
        kind = {"(": LPAREN, ")": RPAREN, ",": COMMA}.get(ch, OTHER)
        return Token(kind, ch, start + 1)

    def _integer(self, start: int) -> Token:
        text, n = self.text, len(self.text)
        end = start + 1
        while end < n and _is_digit(text[end]):
            end += 1
        if end < n and (_is_word_char(text[end]) or text[end] == "."):
            # "1.5", "1e3", "1AND": not an integer; keep it whole so the message shows what was written.
            while end < n and (_is_word_char(text[end]) or text[end] == "."):
                end += 1
            self.i = end
            return Token(OTHER, text[start:end], start + 1)
        self.i = end
        written = text[start:end]
        # More than 10 significant digits is out of range anyway (None); not converting avoids huge-int work.
        value = int(written) if len(written.lstrip("+-").lstrip("0")) <= 10 else None
        return Token(INT, written, start + 1, value)

    def _string(self, start: int) -> Token:
        text, n = self.text, len(self.text)
        chars: list[str] = []
        i = start + 1
        while i < n:
            ch = text[i]
            if ch == '"':
                self.i = i + 1
                return Token(STRING, text[start : i + 1], start + 1, "".join(chars))
            if ch == "\\":
                if i + 1 >= n:
                    break
                escaped = text[i + 1]
                if escaped not in '"\\':
                    raise _fail(
                        i + 1,
                        f"invalid escape {repr(chr(92) + escaped)} in the string starting at position {start + 1}; "
                        'only \\" (a quote) and \\\\ (a backslash) are allowed',
                    )
                chars.append(escaped)
                i += 2
                continue
            chars.append(ch)
            i += 1
        hint = ' (\\" inside a string is an escaped quote; write \\\\ for a backslash)' if "\\" in text[start:] else ""
        raise _fail(start + 1, f"unterminated string: expected a closing '\"' before the end of the filter{hint}")


# ---- parser ---------------------------------------------------------------------------------------


def _check_text(text: object) -> str:
    """Checks that need the whole text and must come before parsing: type, length, unstorable characters."""
    if not isinstance(text, str):
        raise InvalidFilter(f"Filter: expected the filter as text, found {type(text).__name__}")
    if len(text) > MAX_FILTER_LENGTH:
        raise _fail(
            MAX_FILTER_LENGTH + 1,
            f"the filter is longer than {MAX_FILTER_LENGTH} characters ({len(text)} characters)",
        )
    nul = text.find("\x00")
    if nul >= 0:
        raise _fail(nul + 1, "NUL characters (U+0000) are not allowed in a filter")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _fail(error.start + 1, f"{text[error.start]!r} is not a valid Unicode character (lone surrogate)")
    if not text.strip(_WHITESPACE):
        raise _fail(1, "the filter is empty; expected a comparison such as int_attr>=100")
    return text


class Parser:
    """Recursive descent, one method per grammar rule, one token of look-ahead."""

    def __init__(self, text: str):
        self.lexer = Lexer(text)
        self.token = self.lexer.next()
        self.depth = 0  # parentheses currently open

    def advance(self) -> Token:
        token = self.token
        self.token = self.lexer.next()
        return token

    def expected(self, what: str) -> InvalidFilter:
        return _fail(self.token.position, f"expected {what}, found {_show(self.token)}")

    def keyword(self) -> str | None:
        """The current token as a lower-case keyword or field name; None if it is not an ASCII word."""
        if self.token.kind == WORD and self.token.text.isascii():
            return self.token.text.lower()
        return None

    def parse(self) -> Node:
        node = self.expr()
        if self.token.kind == RPAREN:
            raise _fail(self.token.position, "found ')' without a matching '('")
        if self.token.kind != END:
            raise self.expected("AND, OR or the end of the filter")
        return node

    def expr(self) -> Node:
        return self.joined("or", Or, self.term)

    def term(self) -> Node:
        return self.joined("and", And, self.factor)

    def joined(self, keyword: str, kind: type, operand) -> Node:
        """``operand ( keyword operand )*``, merged into one ``kind`` node when there are several."""
        operands = [operand()]
        while self.keyword() == keyword:
            self.advance()
            operands.append(operand())
        return _combine(kind, operands)

    def factor(self) -> Node:
        if self.token.kind != LPAREN:
            return self.compare()
        opening = self.advance()
        if self.depth >= MAX_NESTING:
            # The limit keeps the recursion (and the SQL compiler's) bounded for any input.
            raise _fail(opening.position, f"parentheses are nested deeper than {MAX_NESTING} levels")
        self.depth += 1
        node = self.expr()
        if self.token.kind != RPAREN:
            raise self.expected(f"AND, OR or ')' to close the '(' at position {opening.position}")
        self.advance()
        self.depth -= 1
        return node

    def compare(self) -> Node:
        field = self.keyword()
        if self.token.kind != WORD or field in _KEYWORDS:
            raise self.expected(f"a field name ({', '.join(FIELDS)}) or '('")
        if field not in FIELDS:
            raise _fail(self.token.position, f"unknown field {_show(self.token)}; the fields are {', '.join(FIELDS)}")
        self.advance()
        is_int = field in INT_ATTRS
        word = self.keyword()
        if word == "in":
            self.advance()
            return Membership(field, self.in_list(field, "in"))
        if word == "not":
            self.advance()
            if self.keyword() != "in":
                raise self.expected(f"'in' after '{field} not'")
            self.advance()
            return Membership(field, self.in_list(field, "not in"), negated=True)
        if self.token.kind == OP and self.token.text in (INT_OPS if is_int else STR_OPS):
            op = self.advance().text
            return Comparison(field, op, self.literal(field, f"after '{field} {op}'"))
        if is_int:
            raise self.expected(f"a comparison operator (>, >=, <, <=, =, !=, in, not in) after {field}")
        raise self.expected(f"=, !=, in or not in after {field} (a string field: > and < do not apply)")

    def in_list(self, field: str, keyword: str) -> tuple[int | str, ...]:
        if self.token.kind != LPAREN:
            raise self.expected(f"'(' to open the list after '{field} {keyword}'")
        self.advance()
        if self.token.kind == RPAREN:
            raise _fail(self.token.position, f"the list after '{field} {keyword}' is empty; it needs a value")
        values = [self.literal(field, f"in the list after '{field} {keyword}'")]
        while self.token.kind == COMMA:
            self.advance()
            values.append(self.literal(field, f"in the list after '{field} {keyword}'"))
        if self.token.kind != RPAREN:
            raise self.expected("',' or ')' in the list")
        self.advance()
        return tuple(values)

    def literal(self, field: str, where: str) -> int | str:
        token = self.token
        if field in INT_ATTRS:
            if token.kind != INT:
                raise self.expected(f"an integer {where} ({field} is an integer field)")
            if token.value is None or not INT32_MIN <= token.value <= INT32_MAX:
                raise _fail(
                    token.position,
                    f"integer {_show(token)} is out of the 32-bit range {INT32_MIN}..{INT32_MAX}",
                )
        elif token.kind != STRING:
            error = self.expected(f"a double-quoted string {where} ({field} is a string field)")
            if token.text == "'":
                error = InvalidFilter(error.message + "; strings are written in double quotes")
            raise error
        self.advance()
        return token.value


def _combine(kind: type[And] | type[Or], operands: list[Node]) -> Node:
    """One operand stands alone; operands of the same kind are merged, so chains stay flat."""
    if len(operands) == 1:
        return operands[0]
    flat: list[Node] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))
    return kind(tuple(flat))


def parse_filter(text: str) -> Node:
    """Parse filter text into the AST; every problem raises InvalidFilter naming the position."""
    return _parse(_check_text(text))


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Node:
    # The AST is immutable, so one text is parsed once (its statements are cached by AST in picture_search).
    return Parser(text).parse()


# ---- SQL ------------------------------------------------------------------------------------------

_SQL_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "=": operator.eq}


def to_sql(node: Node, table: sa.Table = pictures) -> sa.ColumnElement[bool]:
    """The condition for an AST over ``table``'s attribute columns; every value is a bound parameter."""
    if isinstance(node, And):
        return sa.and_(*(to_sql(operand, table) for operand in node.operands))
    if isinstance(node, Or):
        return sa.or_(*(to_sql(operand, table) for operand in node.operands))
    column = table.c[node.field]
    if isinstance(node, Membership):
        if node.negated:
            # NOT IN over a NULL is unknown; the documented rule says a missing value is "not in".
            return sa.or_(column.is_(None), column.not_in(node.values))
        return column.in_(node.values)
    if node.op == "!=":
        return column.is_distinct_from(node.value)  # a missing value is "not equal"
    return _SQL_OPS[node.op](column, node.value)


def compile_filter(text: str, table: sa.Table = pictures) -> sa.ColumnElement[bool]:
    """Parse and compile filter text to a WHERE condition over ``table`` (InvalidFilter on any problem)."""
    return to_sql(parse_filter(text), table)
