"""The registry's errors, apart from the store so that code which only raises or catches them
(a candidate's file checked against its hash) does not import the store."""

from __future__ import annotations

from ..errors import PipelineError


class RegistryError(PipelineError):
    """The registry cannot do what was asked (no such version, store unreachable, ...)."""


class IntegrityError(RegistryError):
    """A model file does not match the hash recorded when it was registered."""
