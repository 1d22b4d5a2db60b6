"""fields-app test suite (mirrors the packages)."""

from tests import typecheck as typecheck  # noqa: F401  (the jaxtyping hook resolves tests.typecheck.typecheck)
