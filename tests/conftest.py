"""Suite-wide settings: shape bugs between ``[T, N]`` and ``[N]`` arrays raise instead of
broadcasting silently."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
