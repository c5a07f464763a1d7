"""docs/inventory.md stays in step with the models."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from netprov.core import inventory as inv
from netprov.core.reference import BEGIN, END, SECTIONS, inventory_reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "inventory.md"


def test_generated_reference_matches_docs(update_goldens: bool) -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    if update_goldens:
        DOC.write_text(text[:start] + inventory_reference() + text[end:])
        text = DOC.read_text()
    assert text[start:start + len(inventory_reference())] == inventory_reference(), (
        "docs/inventory.md is out of date: run pytest --update-goldens")


def _models(model: type[BaseModel], seen: set) -> None:
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                if tp not in seen:
                    seen.add(tp)
                    _models(tp, seen)
            stack.extend(typing.get_args(tp))


def test_every_model_is_documented() -> None:
    seen: set = set()
    _models(inv.Inventory, seen)
    documented = {model for _, model, _ in SECTIONS}
    assert seen <= documented, f"undocumented sections: {seen - documented}"
    assert all(m.__doc__ or any(f.description for f in m.model_fields.values()) for m in documented)
