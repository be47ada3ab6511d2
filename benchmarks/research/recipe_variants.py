"""Candidate deploy forms for timing: a converter's recipe with some fields changed.

A variant is written ``FIELD=VALUE[,FIELD=VALUE...]`` over the fields of ``model.deploy.Recipe``
(``few_reshapes=true``, ``centred_stream=true,norm_means=conv``). It is applied to the recipe of
whichever backend a converter uses, so one variant means the same change on every runtime, and the
model it gives computes the same function (``model.deploy.rewrite``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from common.errors import UserError
from model.deploy import RECIPES, Recipe, rewrite

BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class VariantError(UserError):
    """A variant that names no recipe field or gives a field a value of the wrong kind."""


@dataclass(frozen=True)
class Variant:
    """Recipe fields to change, in the order given."""

    changes: tuple[tuple[str, object], ...]

    @property
    def tag(self) -> str:
        """The variant in a file name: ``few_reshapes-true+norm_means-conv``."""
        return "+".join(f"{name}-{str(value).lower()}" for name, value in self.changes)

    def __str__(self) -> str:
        return ",".join(f"{name}={str(value).lower()}" for name, value in self.changes)

    def recipe(self, backend: str) -> Recipe:
        """``backend``'s recipe with this variant's changes."""
        return replace(RECIPES[backend], **dict(self.changes))

    def deploy_model(self, model: torch.nn.Module, backend: str, input_size: int) -> torch.nn.Module:
        """``model`` (the reference, unfused) rewritten by this variant of ``backend``'s recipe."""
        return rewrite(model, self.recipe(backend), input_size)


def parse_variant(text: str) -> Variant:
    """``FIELD=VALUE[,FIELD=VALUE...]`` over ``Recipe``'s fields; booleans as true/false, 1/0 or yes/no."""
    kinds = {field.name: type(field.default) for field in fields(Recipe)}
    changes = []
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip().lower()
        if not sep or name not in kinds:
            raise VariantError(f"variant {text!r}: write FIELD=VALUE with FIELD one of {', '.join(kinds)}")
        if kinds[name] is bool:
            if value not in BOOLEANS:
                raise VariantError(f"variant {text!r}: {name} takes true or false, not {value!r}")
            changes.append((name, BOOLEANS[value]))
        else:
            changes.append((name, value))
    if not changes:
        raise VariantError(f"variant {text!r} changes nothing: write FIELD=VALUE with FIELD one of {', '.join(kinds)}")
    try:
        replace(Recipe(), **dict(changes))
    except ValueError as err:
        raise VariantError(f"variant {text!r}: {err}") from None
    return Variant(tuple(changes))
