"""Representations: encodings, networks and field kinds. Imports nothing else of ours."""

from fields.encodings.frequency import PositionalEncoding, RandomFourierFeatures
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.networks import MLP, Siren
from fields.sdf import SDFField

__all__ = [
    "HashGridConfig", "HashGridEncoding", "MLP", "PositionalEncoding", "RandomFourierFeatures",
    "SDFField", "Siren",
]
