"""Representations: encodings, networks and field kinds. Imports nothing else of ours."""

from fields.encodings.frequency import PositionalEncoding, RandomFourierFeatures
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.encodings.quantized import CoordinateQuantizer, QuantizedField
from fields.networks import MLP, Siren
from fields.neus import LearnedVariance, NeuSField
from fields.radiance import RadianceField
from fields.sdf import SDFField

__all__ = [
    "CoordinateQuantizer", "HashGridConfig", "HashGridEncoding", "LearnedVariance", "MLP",
    "NeuSField", "PositionalEncoding", "QuantizedField", "RadianceField", "RandomFourierFeatures",
    "SDFField", "Siren",
]
