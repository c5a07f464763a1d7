"""The simulator's citations of the middleware hold: every ``mw: <path>:<line> @ <tag> | <fragment>`` comment
in sim/truenas_sim names a line that has the fragment at that tag; every message in the generated RULES
table is cited at some profile's tag or says why it is the simulator's own; and the wordings cited as
pydantic's are what pydantic itself says."""

from __future__ import annotations

import enum
import re
import subprocess
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, ValidationError

from truenas_sim import schema as S
from truenas_sim.errors import ValidationErrors
from truenas_sim.sources import RULES

SIM = Path(__file__).resolve().parents[2] / "sim" / "truenas_sim"
MW = Path("/work/.mirror/truenas+middleware/repo")
CITE_RE = re.compile(r"mw: (\S+):(\d+) @ (\S+) \| (.+)$")


def _citations():
    out = []
    for path in sorted(SIM.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = CITE_RE.search(line)
            if m:
                out.append((f"{path.relative_to(SIM)}:{n}", *m.groups()))
    return out


def test_there_are_citations():
    assert len(_citations()) >= 15


@pytest.mark.skipif(not MW.exists(), reason="needs the middleware mirror (scripts/trace_truenas_sources.py)")
@pytest.mark.parametrize("where,path,line,tag,fragment", _citations())
def test_cited_line_has_the_fragment(where, path, line, tag, fragment):
    text = subprocess.run(["git", "--git-dir", str(MW), "show", f"{tag}:src/middlewared/middlewared/{path}"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    assert fragment.strip() in text[int(line) - 1], f"{where}: {path}:{line} @ {tag}"


def test_every_message_is_cited_or_explained():
    for text, (line, row, how, note) in RULES.items():
        assert how in ("text", "fstring", "pydantic", "zfs", "own"), text
        if how == "own":
            assert len(note) > 30 and not any(row.values()), text
        else:
            assert any(row.values()), f"{text!r} ({line}) is cited nowhere"


def _msgs(model, **data) -> list[str]:
    with pytest.raises(ValidationError) as ei:
        model(**data)
    return [e["msg"] for e in ei.value.errors()]


def _sim(field: S.Field, value) -> list[str]:
    v = ValidationErrors()
    S.check_value(True, "x", field, value, v)
    return [e[1] for e in v.errors]


def test_schema_pydantic_wordings_are_pydantics():
    class M(BaseModel):
        s: Annotated[str, StringConstraints(min_length=2, max_length=3)] = "ab"
        n: Annotated[int, Field(ge=1, le=9)] = 1
        lst: Annotated[list[int], Field(min_length=1)] = [1]
        e: Literal["A", "B"] = "A"

    assert _sim(S.Field("str", max_length=3), "abcd") == _msgs(M, s="abcd")
    assert _sim(S.Field("str", min_length=2), "a") == _msgs(M, s="a")
    assert _sim(S.Field("int", range=(1, 9)), 0) == _msgs(M, n=0)
    assert _sim(S.Field("int", range=(1, 9)), 10) == _msgs(M, n=10)
    assert _sim(S.Field("list", min_length=1), []) == _msgs(M, lst=[])
    assert _sim(S.Field("str", enum=("A", "B")), "C") == _msgs(M, e="C")


def test_method_pydantic_wordings_are_pydantics():
    class AuthMech(enum.StrEnum):   # utils/auth.py:14 @ TS-25.10.1
        API_KEY_PLAIN = "API_KEY_PLAIN"
        PASSWORD_PLAIN = "PASSWORD_PLAIN"
        TOKEN_PLAIN = "TOKEN_PLAIN"
        OTP_TOKEN = "OTP_TOKEN"

    def asserts(value):   # a bare `assert` as match_validator has (pytest would rewrite one written here)
        if value != "ok":
            raise AssertionError("Name can only contain x")
        return value

    class Otp(BaseModel):
        mechanism: Literal[AuthMech.OTP_TOKEN]

    class Key(BaseModel):
        mechanism: Literal[AuthMech.API_KEY_PLAIN]

    class M(BaseModel):
        s: str = ""
        d: dict = {}
        lst: list = []
        i: int = 0
        q: Literal[32, 128] | None = None
        verb: Literal["START", "STOP", "RESTART", "RELOAD"] = "START"
        name: Annotated[str, AfterValidator(asserts)] = "ok"
        otp: Otp | None = None
        login: Key | Otp | None = Field(default=None, discriminator="mechanism")

    for text in ("Input should be a valid string", "Input should be a valid dictionary",
                 "Input should be a valid list", "Input should be a valid integer", "Input should be 32 or 128",
                 "Input should be 'START', 'STOP', 'RESTART' or 'RELOAD"):
        assert text in RULES and RULES[text][2] == "pydantic"
    assert _msgs(M, s=1) == ["Input should be a valid string"]
    assert _msgs(M, d=1) == ["Input should be a valid dictionary"]
    assert _msgs(M, lst=1) == ["Input should be a valid list"]
    assert _msgs(M, i="x") == ["Input should be a valid integer, unable to parse string as an integer"]
    assert _msgs(M, q=5) == ["Input should be 32 or 128"]
    assert _msgs(M, verb="X") == ["Input should be 'START', 'STOP', 'RESTART' or 'RELOAD'"]
    assert _msgs(M, name="no") == ["Assertion failed, Name can only contain x"]
    assert _msgs(M, otp={"mechanism": "X"}) == ["Input should be <AuthMech.OTP_TOKEN: 'OTP_TOKEN'>"]
    assert _msgs(M, login={"mechanism": "X"}) == [
        "Input tag 'X' found using 'mechanism' does not match any of the expected tags: "
        "<AuthMech.API_KEY_PLAIN: 'API_KEY_PLAIN'>, <AuthMech.OTP_TOKEN: 'OTP_TOKEN'>"]
