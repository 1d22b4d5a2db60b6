"""The run-time shape/type checker used by pytest's jaxtyping import hook (pyproject addopts).

beartype with the PEP 484 numeric tower, so an ``int`` is accepted where ``float`` is annotated.
"""

from beartype import BeartypeConf, beartype

typecheck = beartype(conf=BeartypeConf(is_pep484_tower=True))
