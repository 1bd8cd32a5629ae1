"""Render a Helm chart in Python, exactly as Helm 3 would, or refuse: for offline chart tests.

The tests of ``deploy/helm/ember`` must run without the ``helm`` binary and without a network,
so this module implements the small part of Go's ``text/template`` and of Helm/Sprig that the
chart uses, and raises :class:`Unsupported` on everything else. The rule is: *whatever renders
here renders identically with Helm*; a template that Helm would render differently must fail
here rather than pass silently. Where exactness would take too much code, the renderer is
stricter than Helm instead (it raises), never looser.

What is implemented, with Helm's semantics:

- Text and actions ``{{ … }}`` with Go's trim markers: ``{{-`` followed by a space trims every
  space, tab, CR and newline before the action, ``-}}`` preceded by a space trims them after it
  (``{{-3}}`` is the number -3, not a trim). Comments ``{{/* … */}}`` (also with trim markers).
- ``if`` / ``else if`` / ``else`` / ``end``, ``range`` (``$v :=``, ``$k, $v :=``, ``else``; maps in
  sorted key order), ``with`` / ``else``, top-level ``define``, variables (``$``, ``$x := …``,
  ``$x = …``, scoped to the enclosing control structure), fields (``.Values.a.b``, ``$x.a``),
  string/number/bool/nil literals, parentheses and pipelines.
- Go's builtins ``and or not eq ne lt le gt ge len printf`` (printf: ``%s %d %v %q %%`` only) and
  Helm/Sprig's ``include required fail default empty quote toYaml indent nindent trunc
  trimSuffix contains int add sha256sum`` and ``.Files.Get``. Function arguments are type
  checked as Go does (``nindent`` needs an ``int``: a number from values.yaml is a float64 in
  Helm and is refused there, so it is refused here too).
- Values as Helm loads them: values.yaml numbers are ``float64`` (Python ``float``), so
  ``{{ .Values.n }}`` prints Go's ``%v`` of a float64 (``1000000`` prints ``1e+06``, as in Helm),
  and ``eq .Values.n 1`` is an error ("incompatible types for comparison"), as in Helm. User
  values are merged over the defaults as ``helm install -f`` does (``null`` deletes a key).
- ``toYaml`` writes what sigs.k8s.io/yaml (go-yaml v2) writes: keys in go-yaml's order,
  sequences not indented under their key, ``{}``/``[]`` for empty ones; strings it cannot be
  sure how go-yaml would quote are refused.

Things Helm does that are refused here: printing a missing value (Helm prints nothing, which in
a manifest is nearly always a bug), every other function, ``template``/``block``/``break``/
``continue``/``else with``, method calls other than ``.Files.Get``, ``.Capabilities``,
``.Subcharts``, character constants, octal/hex/imaginary numbers and printf verbs or flags
other than the four above.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "GoStruct",
    "HelmFiles",
    "RenderedChart",
    "TemplateError",
    "TemplateSet",
    "Unsupported",
    "go_format_float",
    "load_yaml_documents",
    "merge_values",
    "normalise_values",
    "render_chart",
    "to_yaml",
]


class TemplateError(Exception):
    """The template is wrong, or Helm itself would stop on it (``fail``, ``required``, types)."""


class Unsupported(TemplateError):
    """A construct this renderer does not implement: Helm might render it, we refuse to guess."""


_SPACE = " \t\r\n"
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?[0-9][0-9A-Za-z_.]*(?:(?<=[eE])[+-][0-9]+)?")
_DECIMAL = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MISSING = object()


# -- Go values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoStruct:
    """A Go struct (``.Chart``, ``.Release``, ``.Template``): a missing field is an error."""

    type_name: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class HelmFiles:
    """Helm's ``.Files``: only ``.Files.Get "files/…"`` is implemented."""

    root: Path

    def get(self, name: str) -> str:
        if not name.startswith("files/") or ".." in Path(name).parts:
            raise Unsupported(f".Files.Get {name!r}: only files under files/ are readable here")
        path = self.root / name
        if not path.is_file():
            # Helm returns "" for a missing file; a chart that relies on that is broken.
            raise TemplateError(f".Files.Get {name!r}: no such file in the chart")
        return path.read_text(encoding="utf-8")


def _kind(value: Any) -> str:
    """Go's basic kind of a value, as the comparison functions see it."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    return "struct"


def _go_type(value: Any) -> str:
    return {
        "nil": "<nil>",
        "bool": "bool",
        "int": "int",
        "float": "float64",
        "string": "string",
        "map": "map[string]interface {}",
        "slice": "[]interface {}",
    }.get(_kind(value), "struct")


def _truth(value: Any) -> bool:
    """Go template truth: the zero value of its type, or an empty map/slice/string, is false."""
    kind = _kind(value)
    if kind == "nil":
        return False
    if kind in ("bool", "int", "float"):
        return bool(value)
    if kind in ("string", "map", "slice"):
        return len(value) > 0
    return True


def go_format_float(value: float) -> str:
    """``fmt.Sprint(float64)``: strconv.FormatFloat(f, 'g', -1, 64) (``1e+06``, ``8080``, ``0.5``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    # repr() gives the shortest digits that round-trip, as Go's shortest formatting does.
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    raw = "".join(map(str, digit_tuple))
    digits = raw.rstrip("0")
    exponent += len(raw) - len(digits)  # value = int(digits) x 10^exponent
    # Now value = 0.digits x 10^dp.
    dp = len(digits) + exponent
    neg = "-" if sign else ""
    exp = dp - 1
    if exp < -4 or exp >= 6:  # %e with as many digits as the shortest form has
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{neg}{digits}{'0' * (dp - len(digits))}"
    return f"{neg}{digits[:dp]}.{digits[dp:]}"


def _print_value(value: Any, where: str) -> str:
    """What ``{{ value }}`` writes: fmt.Sprint of a basic value; anything else is refused."""
    kind = _kind(value)
    if kind == "string":
        return value
    if kind == "bool":
        return "true" if value else "false"
    if kind == "int":
        return str(value)
    if kind == "float":
        return go_format_float(value)
    if kind == "nil":
        raise TemplateError(f"{where}: the value is missing (Helm would print nothing)")
    raise Unsupported(f"{where}: printing a {_go_type(value)} (Go would print its %v form)")


def _strval(value: Any, where: str) -> str:
    """Sprig's strval (fmt.Sprintf("%v")) for basic values."""
    if value is None:
        raise Unsupported(f"{where}: %v of nil")
    return _print_value(value, where)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote(text: str) -> str:
    """strconv.Quote for ASCII text (``%q``); other characters are refused."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif " " <= char <= "~":
            out.append(char)
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\x{ord(char):02x}")
        else:
            raise Unsupported(f"quoting non-ASCII text {text!r}")
    out.append('"')
    return "".join(out)


def _go_unquote(literal: str) -> str:
    """strconv.Unquote of a Go interpreted string literal (without \\' which Go refuses)."""
    body = literal[1:-1]
    out: list[str] = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    simple |= {"\\": "\\", '"': '"'}
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            hexa = body[i + 2 : i + 2 + width]
            if not re.fullmatch(f"[0-9A-Fa-f]{{{width}}}", hexa):
                raise TemplateError(f"bad escape in string {literal}")
            out.append(chr(int(hexa, 16)))
            i += 2 + width
        elif nxt in "01234567":
            octal = body[i + 1 : i + 4]
            if not re.fullmatch("[0-7]{3}", octal):
                raise TemplateError(f"bad escape in string {literal}")
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            raise TemplateError(f"unknown escape sequence in string {literal}")
    return "".join(out)


# -- toYaml: go-yaml v2 output ----------------------------------------------------------------------------

# Plain scalars that go-yaml v2 resolves to a bool or null (YAML 1.1).
_YAML11_WORDS = frozenset(
    {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE"}
    | {"false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~"}
)
_PLAIN_WORD = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*")
_QUANTITY = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)")
_DIGITS = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _yaml_string(text: str) -> str:
    """A string scalar as go-yaml v2 writes it, for the shapes whose form is certain."""
    if text == "" or text in _YAML11_WORDS or _DIGITS.fullmatch(text):
        # These would resolve to null, bool, int or float when plain: go-yaml double-quotes them.
        return '"' + text + '"'
    if _PLAIN_WORD.fullmatch(text) or _QUANTITY.fullmatch(text):
        return text
    raise Unsupported(f"toYaml: not sure how go-yaml would write the string {text!r}")


def _yaml_scalar(value: Any) -> str:
    kind = _kind(value)
    if kind == "string":
        return _yaml_string(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "nil":
        return "null"
    if kind == "int":
        return str(value)
    if kind == "float":
        # sigs.k8s.io/yaml goes through JSON: an integral float becomes a YAML int.
        if not math.isfinite(value) or abs(value) >= 2**53 or (value != 0 and abs(value) < 1e-6):
            raise Unsupported(f"toYaml: the number {value!r}")
        if value.is_integer():
            return str(int(value))
        return go_format_float(value)
    raise Unsupported(f"toYaml: a {_go_type(value)}")


def _goyaml_key_less(a: str, b: str) -> bool:
    """go-yaml v2's keyList.Less for two string keys (letters after other runes, numbers by value)."""
    ar, br = a, b
    for i in range(min(len(ar), len(br))):
        if ar[i] == br[i]:
            continue
        al, bl = ar[i].isalpha(), br[i].isalpha()
        if al and bl:
            return ar[i] < br[i]
        if al or bl:
            return bl
        an = bn = 0
        if ar[i] == "0" or br[i] == "0":
            j = i - 1
            while j >= 0 and ar[j].isdigit():
                if ar[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(ar) and ar[ai].isdigit():
            an = an * 10 + int(ar[ai])
            ai += 1
        bi = i
        while bi < len(br) and br[bi].isdigit():
            bn = bn * 10 + int(br[bi])
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ar[i] < br[i]
    return len(ar) < len(br)


def _sorted_keys(mapping: Mapping[str, Any]) -> list[str]:
    for key in mapping:
        if not isinstance(key, str) or not key.isascii():
            raise Unsupported(f"toYaml: the key {key!r}")

    def compare(a: str, b: str) -> int:
        return -1 if _goyaml_key_less(a, b) else (1 if _goyaml_key_less(b, a) else 0)

    return sorted(mapping, key=functools.cmp_to_key(compare))


def _yaml_map(mapping: Mapping[str, Any], indent: int) -> list[str]:
    """Lines, indented absolutely, of a non-empty map whose keys start at column ``indent``."""
    lines: list[str] = []
    for key in _sorted_keys(mapping):
        item = mapping[key]
        head = " " * indent + _yaml_string(key) + ":"
        if isinstance(item, dict) and item:
            lines.append(head)
            lines.extend(_yaml_map(item, indent + 2))
        elif isinstance(item, list) and item:
            lines.append(head)
            lines.extend(_yaml_list(item, indent))  # go-yaml does not indent a list under its key
        else:
            lines.append(f"{head} {_yaml_inline(item)}")
    return lines


def _yaml_list(items: list[Any], indent: int) -> list[str]:
    """Lines of a non-empty list whose dashes are at column ``indent``."""
    lines: list[str] = []
    for item in items:
        if isinstance(item, dict) and item:
            block = _yaml_map(item, indent + 2)
            lines.append(" " * indent + "- " + block[0][indent + 2 :])
            lines.extend(block[1:])
        elif isinstance(item, list) and item:
            raise Unsupported("toYaml: a list directly inside a list")
        else:
            lines.append(" " * indent + "- " + _yaml_inline(item))
    return lines


def _yaml_inline(value: Any) -> str:
    if isinstance(value, dict):
        assert not value
        return "{}"
    if isinstance(value, list):
        assert not value
        return "[]"
    return _yaml_scalar(value)


def to_yaml(value: Any) -> str:
    """Helm's ``toYaml``: go-yaml v2 via JSON, final newline trimmed."""
    if isinstance(value, dict) and value:
        return "\n".join(_yaml_map(value, 0))
    if isinstance(value, list) and value:
        return "\n".join(_yaml_list(value, 0))
    return _yaml_inline(value)


# -- lexer -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # field var dot string number bool nil ident lparen rparen pipe comma declare assign chain
    value: Any
    where: str


@dataclass
class _Item:
    kind: str  # text | action
    text: str = ""
    tokens: list[_Tok] = field(default_factory=list)
    where: str = ""


def _line_of(source: str, pos: int) -> int:
    return source.count("\n", 0, pos) + 1


def _lex(source: str, name: str) -> list[_Item]:
    items: list[_Item] = []
    pos = 0
    trim_next = False
    while True:
        start = source.find("{{", pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        if start < 0:
            if text:
                items.append(_Item("text", text))
            return items
        where = f"{name}:{_line_of(source, start)}"
        trim_left = source[start + 2 : start + 3] == "-" and source[start + 3 : start + 4] in tuple(_SPACE)
        if trim_left:
            text = text.rstrip(_SPACE)
        if text:
            items.append(_Item("text", text))
        inner = start + (4 if trim_left else 2)
        if source.startswith("/*", inner):
            close = source.find("*/", inner + 2)
            if close < 0:
                raise TemplateError(f"{where}: unclosed comment")
            after = close + 2
            if source.startswith("}}", after):
                pos, trim_next = after + 2, False
            elif source[after : after + 1] in tuple(_SPACE) and source.startswith("-}}", after + 1):
                pos, trim_next = after + 4, True
            else:
                raise TemplateError(f"{where}: comment ends before closing delimiter")
            continue
        tokens, pos, trim_next = _lex_action(source, inner, where)
        items.append(_Item("action", tokens=tokens, where=where))


def _lex_action(source: str, pos: int, where: str) -> tuple[list[_Tok], int, bool]:
    tokens: list[_Tok] = []
    n = len(source)
    while True:
        if source.startswith("}}", pos):
            return tokens, pos + 2, False
        if pos + 1 < n and source[pos] in _SPACE and source.startswith("-}}", pos + 1):
            return tokens, pos + 4, True
        if pos >= n:
            raise TemplateError(f"{where}: unclosed action")
        char = source[pos]
        if char in _SPACE:
            pos += 1
            continue
        if char == '"':
            match = re.compile(r'"(?:\\.|[^"\\\n])*"').match(source, pos)
            if not match:
                raise TemplateError(f"{where}: unterminated quoted string")
            tokens.append(_Tok("string", _go_unquote(match.group()), where))
            pos = match.end()
        elif char == "`":
            close = source.find("`", pos + 1)
            if close < 0:
                raise TemplateError(f"{where}: unterminated raw quoted string")
            tokens.append(_Tok("string", source[pos + 1 : close].replace("\r", ""), where))
            pos = close + 1
        elif char == "'":
            raise Unsupported(f"{where}: character constants")
        elif char == "(":
            tokens.append(_Tok("lparen", "(", where))
            pos += 1
        elif char == ")":
            tokens.append(_Tok("rparen", ")", where))
            pos += 1
            if source.startswith(".", pos) and _IDENT.match(source, pos + 1):
                raise Unsupported(f"{where}: field access on a parenthesized pipeline")
        elif char == "|":
            tokens.append(_Tok("pipe", "|", where))
            pos += 1
        elif char == ",":
            tokens.append(_Tok("comma", ",", where))
            pos += 1
        elif source.startswith(":=", pos):
            tokens.append(_Tok("declare", ":=", where))
            pos += 2
        elif char == "=":
            tokens.append(_Tok("assign", "=", where))
            pos += 1
        elif char == "$":
            match = re.compile(r"\$[A-Za-z0-9_]*").match(source, pos)
            assert match
            pos = match.end()
            fields, pos = _lex_fields(source, pos)
            tokens.append(_Tok("var", (match.group(), fields), where))
        elif char == ".":
            if _IDENT.match(source, pos + 1):
                fields, pos = _lex_fields(source, pos)
                tokens.append(_Tok("field", fields, where))
            elif source[pos + 1 : pos + 2].isdigit():
                raise Unsupported(f"{where}: number literal starting with '.'")
            else:
                tokens.append(_Tok("dot", ".", where))
                pos += 1
        elif char in "+-" or char.isdigit():
            match = _NUMBER.match(source, pos)
            if not match:
                raise TemplateError(f"{where}: bad number syntax")
            text = match.group()
            if not _DECIMAL.fullmatch(text):
                raise Unsupported(f"{where}: number literal {text!r} (only plain decimal numbers)")
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            tokens.append(_Tok("number", value, where))
            pos = match.end()
        elif _IDENT.match(source, pos):
            match = _IDENT.match(source, pos)
            assert match
            word = match.group()
            pos = match.end()
            if source.startswith(".", pos) and _IDENT.match(source, pos + 1):
                raise Unsupported(f"{where}: field access on {word!r}")
            if word in ("true", "false"):
                tokens.append(_Tok("bool", word == "true", where))
            elif word == "nil":
                tokens.append(_Tok("nil", None, where))
            else:
                tokens.append(_Tok("ident", word, where))
        else:
            raise TemplateError(f"{where}: unrecognized character in action: {char!r}")


def _lex_fields(source: str, pos: int) -> tuple[tuple[str, ...], int]:
    fields: list[str] = []
    while source.startswith(".", pos):
        match = _IDENT.match(source, pos + 1)
        if not match:
            break
        fields.append(match.group())
        pos = match.end()
    if source.startswith(".", pos):
        raise TemplateError("bad field name")
    return tuple(fields), pos


# -- parser ----------------------------------------------------------------------------------------------


@dataclass
class _Pipe:
    decl: list[str]
    assign: bool
    cmds: list[list[Any]]  # each command: its operands (_Tok or _Pipe for parentheses)
    where: str


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _If:
    pipe: _Pipe
    body: list[Any]
    orelse: list[Any] | None


@dataclass
class _With:
    pipe: _Pipe
    body: list[Any]
    orelse: list[Any] | None


@dataclass
class _Range:
    pipe: _Pipe
    body: list[Any]
    orelse: list[Any] | None


class _Parser:
    def __init__(self, items: list[_Item], defines: dict[str, list[Any]]) -> None:
        self.items = items
        self.i = 0
        self.defines = defines
        # Variables in scope while parsing: Go refuses a template using any other, even in a
        # branch that never runs.
        self.vars = ["$"]

    def parse_top(self) -> list[Any]:
        nodes, end, _ = self.block(top=True)
        assert end == "eof"
        return nodes

    def block(self, *, top: bool) -> tuple[list[Any], str, _Item | None]:
        nodes: list[Any] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if item.kind == "text":
                nodes.append(_Text(item.text))
                continue
            if not item.tokens:
                raise TemplateError(f"{item.where}: missing value for command")
            head = item.tokens[0]
            word = head.value if head.kind == "ident" and head.value in _KEYWORDS else None
            if word == "if":
                nodes.append(self.control(_If, item, item.tokens[1:], "if"))
            elif word == "with":
                nodes.append(self.control(_With, item, item.tokens[1:], "with"))
            elif word == "range":
                nodes.append(self.control(_Range, item, item.tokens[1:], "range"))
            elif word == "define":
                self.define(item, top=top)
            elif word in ("end", "else"):
                if top:
                    raise TemplateError(f"{item.where}: unexpected {{{{{word}}}}}")
                return nodes, word, item
            elif word is not None:
                raise Unsupported(f"{item.where}: {{{{{word}}}}} is not implemented")
            else:
                nodes.append(_Action(_parse_pipeline(item.tokens, item.where, "command", self.vars)))
        if not top:
            raise TemplateError("unexpected EOF: missing {{end}}")
        return nodes, "eof", None

    def define(self, item: _Item, *, top: bool) -> None:
        if not top:
            raise TemplateError(f"{item.where}: unexpected {{{{define}}}} inside a control structure")
        toks = item.tokens
        if len(toks) != 2 or toks[1].kind != "string":
            raise TemplateError(f"{item.where}: define needs exactly one quoted name")
        outer_vars, self.vars = self.vars, ["$"]
        body, end, end_item = self.block(top=False)
        self.vars = outer_vars
        if end != "end" or end_item is None or len(end_item.tokens) != 1:
            raise TemplateError(f"{item.where}: define must close with a plain {{{{end}}}}")
        name = toks[1].value
        if name in self.defines:
            raise Unsupported(f"{item.where}: template {name!r} is defined twice")
        self.defines[name] = body

    def control(self, cls: type, item: _Item, tokens: list[_Tok], context: str) -> Any:
        mark = len(self.vars)  # as Go: what is declared inside is out of scope after {{end}}
        try:
            return self._control(cls, item, tokens, context)
        finally:
            del self.vars[mark:]

    def _control(self, cls: type, item: _Item, tokens: list[_Tok], context: str) -> Any:
        if not tokens:
            raise TemplateError(f"{item.where}: missing value for {context}")
        pipe = _parse_pipeline(tokens, item.where, context, self.vars)
        body, end, end_item = self.block(top=False)
        assert end_item is not None
        if end == "end":
            if len(end_item.tokens) != 1:
                raise TemplateError(f"{end_item.where}: unexpected tokens after end")
            return cls(pipe, body, None)
        rest = end_item.tokens[1:]
        if not rest:
            orelse, end2, end2_item = self.block(top=False)
            if end2 != "end":
                raise TemplateError(f"{end_item.where}: expected {{{{end}}}} after {{{{else}}}}")
            assert end2_item is not None
            if len(end2_item.tokens) != 1:
                raise TemplateError(f"{end2_item.where}: unexpected tokens after end")
            return cls(pipe, body, orelse)
        if cls is _If and rest[0].kind == "ident" and rest[0].value == "if":
            # {{else if x}} is {{else}}{{if x}}...{{end}}{{end}} sharing the one {{end}}.
            return cls(pipe, body, [self.control(_If, end_item, rest[1:], "if")])
        raise Unsupported(f"{end_item.where}: {{{{else {rest[0].value}}}}} is not implemented")


def _parse_pipeline(tokens: list[_Tok], where: str, context: str, scope: list[str]) -> _Pipe:
    decl: list[str] = []
    assign = False
    toks = list(tokens)
    if toks and toks[0].kind == "var" and not toks[0].value[1]:
        if len(toks) > 1 and toks[1].kind in ("declare", "assign"):
            decl = [toks[0].value[0]]
            assign = toks[1].kind == "assign"
            toks = toks[2:]
        elif (
            context == "range"
            and len(toks) > 3
            and toks[1].kind == "comma"
            and toks[2].kind == "var"
            and not toks[2].value[1]
            and toks[3].kind == "declare"
        ):
            decl = [toks[0].value[0], toks[2].value[0]]
            toks = toks[4:]
    if decl and (decl[0] == "$" or (len(decl) > 1 and decl[1] == "$")):
        raise TemplateError(f"{where}: cannot declare $")
    if assign and context != "command":
        raise Unsupported(f"{where}: assignment inside {context}")
    scope.extend(decl)  # Go declares before it parses the commands
    cmds: list[list[Any]] = []
    current: list[Any] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "pipe":
            if not current:
                raise TemplateError(f"{where}: missing command before |")
            cmds.append(current)
            current = []
            i += 1
        elif tok.kind == "lparen":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"lparen": 1, "rparen": -1}.get(toks[j].kind, 0)
                j += 1
            if depth:
                raise TemplateError(f"{where}: unclosed left paren")
            inner = toks[i + 1 : j - 1]
            if not inner:
                raise TemplateError(f"{where}: missing value in parentheses")
            current.append(_parse_pipeline(inner, where, "parenthesized pipeline", scope))
            i = j
        elif tok.kind in ("rparen", "comma", "declare", "assign"):
            raise TemplateError(f"{where}: unexpected {tok.value!r} in {context}")
        else:
            current.append(tok)
            i += 1
    if not current:
        raise TemplateError(f"{where}: missing value for {context}")
    cmds.append(current)
    for cmd in cmds:
        first = cmd[0]
        if isinstance(first, _Tok) and first.kind == "nil":
            raise TemplateError(f"{where}: nil is not a command")
        if isinstance(first, _Tok) and first.kind == "ident" and first.value not in _FUNCS:
            raise Unsupported(f"{where}: function {first.value!r} is not implemented")
        for operand in cmd[1:]:
            if isinstance(operand, _Tok) and operand.kind == "ident" and operand.value not in _FUNCS:
                raise Unsupported(f"{where}: function {operand.value!r} is not implemented")
        for operand in cmd:
            if isinstance(operand, _Tok) and operand.kind == "var" and operand.value[0] not in scope:
                raise TemplateError(f"{where}: undefined variable {operand.value[0]!r}")
    return _Pipe(decl, assign, cmds, where)


# -- functions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Func:
    call: Callable[..., Any]
    params: tuple[str, ...]  # "int" | "string" | "any"
    variadic: bool = False  # the last param repeats (zero or more times)


class _Fail(TemplateError):
    """``fail`` / ``required``: Helm stops rendering with this message."""


def _check_basic(value: Any, fn: str) -> str:
    kind = _kind(value)
    if kind not in ("bool", "int", "float", "string"):
        raise Unsupported(f"{fn}: comparing a {_go_type(value)}")
    return kind


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("eq: missing argument for comparison")
    ka = _check_basic(a, "eq")
    for b in others:
        if _check_basic(b, "eq") != ka:
            raise TemplateError(f"eq: incompatible types for comparison ({_go_type(a)}, {_go_type(b)})")
        if a == b:
            return True
    return False


def _ordered(name: str, op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        ka, kb = _check_basic(a, name), _check_basic(b, name)
        if ka != kb:
            raise TemplateError(f"{name}: incompatible types for comparison ({_go_type(a)}, {_go_type(b)})")
        if ka == "bool":
            raise TemplateError(f"{name}: invalid type for comparison")
        return op(a, b)

    return compare


def _len(value: Any) -> int:
    if _kind(value) not in ("string", "map", "slice"):
        raise TemplateError(f"len of type {_go_type(value)}")
    return len(value.encode("utf-8") if isinstance(value, str) else value)


def _printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    arg_i = 0
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            out.append(char)
            i += 1
            continue
        verb = fmt[i + 1 : i + 2]
        i += 2
        if verb == "%":
            out.append("%")
            continue
        if verb not in ("s", "d", "v", "q"):
            raise Unsupported(f"printf: verb or flag %{verb} is not implemented")
        if arg_i >= len(args):
            raise TemplateError(f"printf {fmt!r}: missing argument for %{verb}")
        arg = args[arg_i]
        arg_i += 1
        kind = _kind(arg)
        if verb == "s" and kind == "string":
            out.append(arg)
        elif verb == "q" and kind == "string":
            out.append(_go_quote(arg))
        elif verb == "d" and kind == "int":
            out.append(str(arg))
        elif verb == "v" and kind in ("string", "bool", "int", "float"):
            out.append(_print_value(arg, "printf"))
        else:
            raise TemplateError(f"printf: %{verb} of a {_go_type(arg)} (Go would write %!{verb}(…))")
    if arg_i != len(args):
        raise TemplateError(f"printf {fmt!r}: extra arguments")
    return "".join(out)


def _quote(*args: Any) -> str:
    return " ".join(_go_quote(_strval(a, "quote")) for a in args if a is not None)


def _default(default: Any, *given: Any) -> Any:
    if len(given) > 1:
        raise Unsupported("default with more than two arguments")
    return default if not given or _empty(given[0]) else given[0]


def _empty(value: Any) -> bool:
    return not _truth(value) if _kind(value) != "struct" else False


def _indent(spaces: int, text: str) -> str:
    pad = " " * spaces
    return pad + text.replace("\n", "\n" + pad)


def _trunc(count: int, text: str) -> str:
    if not text.isascii():
        raise Unsupported("trunc of non-ASCII text (Sprig cuts bytes)")
    if count < 0 and len(text) + count > 0:
        return text[len(text) + count :]
    if count >= 0 and len(text) > count:
        return text[:count]
    return text


def _trim_suffix(suffix: str, text: str) -> str:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def _to_int(value: Any) -> int:
    """Sprig ``int`` (cast.ToInt) for the inputs whose result is certain."""
    kind = _kind(value)
    if kind == "nil":
        return 0
    if kind == "bool":
        return int(value)
    if kind == "int":
        return value
    if kind == "float":
        if not math.isfinite(value) or abs(value) >= 2**63:
            raise Unsupported(f"int of {value!r}")
        return int(value)  # truncates toward zero, as Go's int(f)
    if kind == "string" and re.fullmatch(r"-?(?:0|[1-9][0-9]*)", value):
        return int(value)
    raise Unsupported(f"int of {value!r} (Sprig would quietly give 0 or parse it its own way)")


def _required(message: str, value: Any) -> Any:
    if value is None or (isinstance(value, str) and value == ""):
        raise _Fail(message)
    return value


def _fail(message: str) -> str:
    raise _Fail(message)


_FUNCS: dict[str, _Func] = {
    # Go text/template builtins
    "and": _Func(lambda *a: a, ("any", "any"), variadic=True),  # evaluated lazily in _Exec
    "or": _Func(lambda *a: a, ("any", "any"), variadic=True),
    "not": _Func(lambda v: not _truth(v), ("any",)),
    "eq": _Func(_eq, ("any", "any"), variadic=True),
    "ne": _Func(lambda a, b: not _eq(a, b), ("any", "any")),
    "lt": _Func(_ordered("lt", lambda a, b: a < b), ("any", "any")),
    "le": _Func(_ordered("le", lambda a, b: a <= b), ("any", "any")),
    "gt": _Func(_ordered("gt", lambda a, b: a > b), ("any", "any")),
    "ge": _Func(_ordered("ge", lambda a, b: a >= b), ("any", "any")),
    "len": _Func(_len, ("any",)),
    "printf": _Func(_printf, ("string", "any"), variadic=True),
    # Helm
    "include": _Func(lambda *a: a, ("string", "any")),  # needs the template set: in _Exec
    "required": _Func(_required, ("string", "any")),
    "fail": _Func(_fail, ("string",)),
    "toYaml": _Func(to_yaml, ("any",)),
    # Sprig
    "default": _Func(_default, ("any", "any"), variadic=True),
    "empty": _Func(_empty, ("any",)),
    "quote": _Func(_quote, ("any",), variadic=True),
    "indent": _Func(_indent, ("int", "string")),
    "nindent": _Func(lambda n, s: "\n" + _indent(n, s), ("int", "string")),
    "trunc": _Func(_trunc, ("int", "string")),
    "trimSuffix": _Func(_trim_suffix, ("string", "string")),
    "contains": _Func(lambda sub, s: sub in s, ("string", "string")),
    "int": _Func(_to_int, ("any",)),
    "add": _Func(lambda *a: sum(_to_int(v) for v in a), ("any",), variadic=True),
    "sha256sum": _Func(lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest(), ("string",)),
}


def _check_args(name: str, spec: _Func, args: list[Any], where: str) -> None:
    fixed = spec.params[:-1] if spec.variadic else spec.params
    if len(args) < len(fixed) or (not spec.variadic and len(args) != len(fixed)):
        raise TemplateError(
            f"{where}: wrong number of args for {name}: want {len(spec.params)} got {len(args)}"
        )
    for i, arg in enumerate(args):
        want = spec.params[min(i, len(spec.params) - 1)]
        if want == "int" and _kind(arg) != "int":
            raise TemplateError(f"{where}: {name}: wrong type for value; expected int; got {_go_type(arg)}")
        if want == "string" and _kind(arg) != "string":
            raise TemplateError(
                f"{where}: {name}: wrong type for value; expected string; got {_go_type(arg)}"
            )


# -- execution -------------------------------------------------------------------------------------------


class _Vars:
    def __init__(self, root: Any) -> None:
        self.stack: list[tuple[str, Any]] = [("$", root)]

    def mark(self) -> int:
        return len(self.stack)

    def pop(self, mark: int) -> None:
        del self.stack[mark:]

    def push(self, name: str, value: Any) -> None:
        self.stack.append((name, value))

    def get(self, name: str, where: str) -> Any:
        for var, value in reversed(self.stack):
            if var == name:
                return value
        raise TemplateError(f"{where}: undefined variable: {name}")

    def set(self, name: str, value: Any, where: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == name:
                self.stack[i] = (name, value)
                return
        raise TemplateError(f"{where}: undefined variable: {name}")


class TemplateSet:
    """Parsed templates sharing one namespace of ``define``\\ d names, as in one Helm chart."""

    def __init__(self) -> None:
        self.files: dict[str, list[Any]] = {}
        self.defines: dict[str, list[Any]] = {}

    def add(self, name: str, source: str) -> None:
        self.files[name] = _Parser(_lex(source, name), self.defines).parse_top()

    def render(self, name: str, data: Any) -> str:
        return self._run(self.files[name], data, 0)

    def render_string(self, source: str, data: Any, name: str = "inline") -> str:
        """Parse and render one template (its defines join the set)."""
        self.add(name, source)
        return self.render(name, data)

    def _run(self, nodes: list[Any], data: Any, depth: int) -> str:
        if depth > 100:
            raise TemplateError("include nesting too deep")
        out: list[str] = []
        _Exec(self, depth).walk(nodes, data, _Vars(data), out)
        return "".join(out)

    def include(self, name: str, data: Any, depth: int, where: str) -> str:
        if name not in self.defines:
            raise TemplateError(f'{where}: no template "{name}" associated with template')
        return self._run(self.defines[name], data, depth + 1)


class _Exec:
    def __init__(self, templates: TemplateSet, depth: int) -> None:
        self.templates = templates
        self.depth = depth

    def walk(self, nodes: list[Any], dot: Any, scope: _Vars, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(node.pipe, dot, scope)
                if not node.pipe.decl:
                    out.append(_print_value(value, node.pipe.where))
            elif isinstance(node, (_If, _With)):
                mark = scope.mark()
                value = self.pipeline(node.pipe, dot, scope)
                if _truth(value):
                    self.walk(node.body, value if isinstance(node, _With) else dot, scope, out)
                elif node.orelse is not None:
                    self.walk(node.orelse, dot, scope, out)
                scope.pop(mark)
            elif isinstance(node, _Range):
                self.range(node, dot, scope, out)
            else:  # pragma: no cover - the parser makes no other node
                raise AssertionError(node)

    def range(self, node: _Range, dot: Any, scope: _Vars, out: list[str]) -> None:
        mark = scope.mark()
        pipe = node.pipe
        value = self.pipeline(_Pipe([], False, pipe.cmds, pipe.where), dot, scope)
        kind = _kind(value)
        if kind == "map":
            pairs = [(key, value[key]) for key in sorted(value)]
        elif kind == "slice":
            pairs = list(enumerate(value))
        elif kind == "nil":
            pairs = []
        else:
            raise Unsupported(f"{pipe.where}: range over a {_go_type(value)}")
        for key, element in pairs:
            inner = scope.mark()
            if len(pipe.decl) == 1:
                scope.push(pipe.decl[0], element)
            elif len(pipe.decl) == 2:
                scope.push(pipe.decl[0], key)
                scope.push(pipe.decl[1], element)
            self.walk(node.body, element, scope, out)
            scope.pop(inner)
        if not pairs and node.orelse is not None:
            self.walk(node.orelse, dot, scope, out)
        scope.pop(mark)

    def pipeline(self, pipe: _Pipe, dot: Any, scope: _Vars) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, scope, value, pipe.where)
        if pipe.decl:
            if pipe.assign:
                scope.set(pipe.decl[0], value, pipe.where)
            else:
                scope.push(pipe.decl[0], value)
        return value

    def command(self, cmd: list[Any], dot: Any, scope: _Vars, final: Any, where: str) -> Any:
        first = cmd[0]
        if isinstance(first, _Tok) and first.kind == "ident":
            return self.call(first.value, cmd[1:], dot, scope, final, where)
        if len(cmd) > 1 or final is not _MISSING:
            if isinstance(first, _Tok) and first.kind in ("field", "var"):
                receiver, method = self.method_receiver(first, dot, scope)
                if isinstance(receiver, HelmFiles) and method == "Get":
                    args = [self.arg(a, dot, scope) for a in cmd[1:]]
                    if final is not _MISSING:
                        args.append(final)
                    _check_args(".Files.Get", _Func(receiver.get, ("string",)), args, where)
                    return receiver.get(args[0])
            raise TemplateError(f"{where}: can't give argument to non-function {self.describe(first)}")
        return self.arg(first, dot, scope)

    @staticmethod
    def describe(node: Any) -> str:
        return node.value if isinstance(node, _Tok) else "(…)"

    def method_receiver(self, tok: _Tok, dot: Any, scope: _Vars) -> tuple[Any, str]:
        if tok.kind == "field":
            fields = tok.value
            receiver = self.fields(dot, fields[:-1], tok.where)
        else:
            name, fields = tok.value
            if not fields:
                return None, ""
            receiver = self.fields(scope.get(name, tok.where), fields[:-1], tok.where)
        return receiver, fields[-1]

    def call(self, name: str, operands: list[Any], dot: Any, scope: _Vars, final: Any, where: str) -> Any:
        spec = _FUNCS[name]
        if name in ("and", "or"):
            thunks: list[Callable[[], Any]] = [functools.partial(self.arg, op, dot, scope) for op in operands]
            if final is not _MISSING:
                thunks.append(lambda: final)
            if len(thunks) < 2:
                raise TemplateError(f"{where}: wrong number of args for {name}: want at least 2")
            value: Any = None
            for thunk in thunks:
                value = thunk()
                if _truth(value) != (name == "and"):
                    return value
            return value
        args = [self.arg(op, dot, scope) for op in operands]
        if final is not _MISSING:
            args.append(final)
        _check_args(name, spec, args, where)
        try:
            if name == "include":
                return self.templates.include(args[0], args[1], self.depth, where)
            return spec.call(*args)
        except _Fail as exc:
            raise _Fail(f"{where}: {name}: {exc}") from None
        except Unsupported as exc:
            raise Unsupported(f"{where}: {exc}") from None
        except TemplateError as exc:
            if str(exc).startswith(where):
                raise
            raise TemplateError(f"{where}: error calling {name}: {exc}") from None

    def arg(self, node: Any, dot: Any, scope: _Vars) -> Any:
        if isinstance(node, _Pipe):
            return self.pipeline(node, dot, scope)
        tok: _Tok = node
        if tok.kind == "field":
            return self.fields(dot, tok.value, tok.where)
        if tok.kind == "var":
            name, fields = tok.value
            return self.fields(scope.get(name, tok.where), fields, tok.where)
        if tok.kind == "dot":
            return dot
        if tok.kind in ("string", "number", "bool", "nil"):
            return tok.value
        if tok.kind == "ident":
            return self.call(tok.value, [], dot, scope, _MISSING, tok.where)
        raise TemplateError(f"{tok.where}: unexpected {tok.value!r}")

    @staticmethod
    def fields(receiver: Any, names: tuple[str, ...], where: str) -> Any:
        for name in names:
            if isinstance(receiver, dict):
                receiver = receiver.get(name)  # missingkey=zero: nil
            elif isinstance(receiver, GoStruct):
                if name not in receiver.fields:
                    raise TemplateError(f"{where}: can't evaluate field {name} in type {receiver.type_name}")
                receiver = receiver.fields[name]
            elif receiver is None:
                raise TemplateError(f"{where}: nil pointer evaluating interface {{}}.{name}")
            elif isinstance(receiver, HelmFiles):
                raise Unsupported(f"{where}: .Files.{name} (only .Files.Get is implemented)")
            else:
                raise TemplateError(f"{where}: can't evaluate field {name} in type {_go_type(receiver)}")
        return receiver


# -- values and charts ----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (the API server refuses them too)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise TemplateError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_documents(text: str) -> list[Any]:
    """Every non-empty YAML document in ``text`` (duplicate keys are errors)."""
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]


def normalise_values(value: Any) -> Any:
    """Values as Helm holds them after loading a values file: every number is a float64."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise Unsupported(f"values: non-string key {key!r}")
        return {key: normalise_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise_values(item) for item in value]
    raise Unsupported(f"values: a {type(value).__name__} ({value!r}) (Helm reads it through JSON)")


def merge_values(defaults: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``helm install -f overrides.yaml``: maps merge recursively, ``null`` deletes a key."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        elif isinstance(merged.get(key), dict) and not isinstance(value, dict):
            raise Unsupported(f"values: {key!r} is a map in the chart, cannot override it with {value!r}")
        else:
            merged[key] = value
    return merged


@dataclass
class RenderedChart:
    """What ``helm template`` would print, per template, and the objects in it."""

    manifests: dict[str, str]  # template path (e.g. "templates/deployment.yaml") -> rendered text
    notes: str
    values: dict[str, Any]

    @property
    def objects(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for name, text in self.manifests.items():
            for doc in load_yaml_documents(text):
                if not isinstance(doc, dict):
                    raise TemplateError(f"{name}: a document that is not a mapping: {doc!r}")
                docs.append(doc)
        return docs

    def kinds(self) -> list[str]:
        return [doc["kind"] for doc in self.objects]

    def one(self, kind: str) -> dict[str, Any]:
        found = [doc for doc in self.objects if doc["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]


_CHART_FIELDS = {
    "apiVersion": "APIVersion",
    "name": "Name",
    "version": "Version",
    "appVersion": "AppVersion",
    "description": "Description",
    "type": "Type",
    "home": "Home",
    "kubeVersion": "KubeVersion",
    "icon": "Icon",
}


def render_chart(
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release_name: str = "ember",
    namespace: str = "default",
) -> RenderedChart:
    """``helm template RELEASE CHART -n NAMESPACE -f values`` for a chart without dependencies."""
    meta = load_yaml_documents((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))[0]
    if meta.get("dependencies"):
        raise Unsupported("chart dependencies")
    chart_fields = {}
    for key, value in meta.items():
        if key in _CHART_FIELDS:
            if not isinstance(value, str):
                raise TemplateError(f"Chart.yaml: {key} must be a string")
            chart_fields[_CHART_FIELDS[key]] = value
    defaults_docs = load_yaml_documents((chart_dir / "values.yaml").read_text(encoding="utf-8"))
    defaults = normalise_values(defaults_docs[0] if defaults_docs else {})
    merged = merge_values(defaults, normalise_values(dict(values or {})))
    templates = TemplateSet()
    sources = sorted(p for p in (chart_dir / "templates").rglob("*") if p.is_file())
    for path in sources:
        templates.add(path.relative_to(chart_dir).as_posix(), path.read_text(encoding="utf-8"))
    chart_name = chart_fields["Name"]
    for rel, nodes in list(templates.files.items()):
        # Helm names each file's template "<chart>/templates/<file>": include can render it.
        templates.defines.setdefault(f"{chart_name}/{rel}", nodes)
    manifests: dict[str, str] = {}
    notes = ""
    for path in sources:
        rel = path.relative_to(chart_dir).as_posix()
        data = {
            "Values": merged,
            "Release": GoStruct(
                "chartutil.Release",
                {
                    "Name": release_name,
                    "Namespace": namespace,
                    "Service": "Helm",
                    "Revision": 1,
                    "IsInstall": True,
                    "IsUpgrade": False,
                },
            ),
            "Chart": GoStruct("*chart.Metadata", chart_fields),
            "Template": GoStruct(
                "chartutil.Template", {"Name": f"{chart_name}/{rel}", "BasePath": f"{chart_name}/templates"}
            ),
            "Files": HelmFiles(chart_dir),
        }
        top = GoStruct("chartutil.Values", data)
        text = templates.render(rel, top)
        if path.name == "NOTES.txt":
            notes = text
        elif path.name.startswith("_"):
            continue
        elif text.strip():
            manifests[rel] = text
    return RenderedChart(manifests, notes, merged)
