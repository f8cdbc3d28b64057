"""The registry of molecule feature schemes, by name, so configs and checkpoints can name the one they use."""

from __future__ import annotations

from encoders.molecule.ogb import OGBScheme
from encoders.molecule.pretrain_gnns import PretrainGNNsScheme
from encoders.molecule.scheme_base import FeatureScheme

SCHEMES: dict[str, FeatureScheme] = {s.name: s for s in (PretrainGNNsScheme(), OGBScheme())}


def get_scheme(scheme: str | FeatureScheme) -> FeatureScheme:
    """The scheme registered as ``scheme`` (a scheme object passes through); ValueError naming the known ones."""
    if isinstance(scheme, FeatureScheme):
        return scheme
    try:
        return SCHEMES[scheme]
    except (KeyError, TypeError):
        known = ", ".join(f"{name!r} (v{s.version})" for name, s in SCHEMES.items())
        raise ValueError(f"unknown molecule feature scheme {scheme!r}; choose one of: {known}") from None
