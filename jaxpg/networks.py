"""The flax modules of jaxpg's own agents (see :mod:`jaxpg.agents` for the protocol).

:class:`ActorCritic` runs one forward pass and returns ``(dist_params, value)``: the policy's
distribution parameters (see :mod:`jaxpg.distributions`) and the critic's value ``[...]`` (or
``None`` when the network has no critic). Observations of any rank are flattened after the
batch axes. Initialisation is orthogonal, as in the standard PPO implementations: gain sqrt(2)
for hidden layers, 0.01 for the policy head, 1 for the value head, zero biases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.recurrent import DenseParams

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "swish": nn.swish}


@jax.custom_batching.custom_vmap
def _orthonormal_columns(a: jax.Array) -> jax.Array:
    """The Q of ``a``'s QR ([n, m], n >= m) with the signs that make R's diagonal positive:
    orthonormal columns spanning ``a``'s, unique for a full-rank ``a``.

    Under ``jax.vmap`` it maps this unbatched QR over the batch with ``lax.map`` instead of
    calling LAPACK's batched QR, which can deadlock on jax 0.10's CPU (seeds vmapped through
    ``train``); a vmapped init therefore equals the unbatched init bit for bit."""
    q, r = jnp.linalg.qr(a)
    return q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(q.dtype)[None, :]


@_orthonormal_columns.def_vmap
def _orthonormal_columns_vmap(axis_size, in_batched, a):
    (batched,) = in_batched
    if not batched:
        return _orthonormal_columns(a), False
    return jax.lax.map(_orthonormal_columns, a), True


def orthogonal(scale: float = 1.0) -> jax.nn.initializers.Initializer:
    """Orthogonal initialiser (Saxe et al., 2014), as ``flax.linen.initializers.orthogonal``:
    ``scale`` times the orthonormal factor of a Gaussian matrix's QR (sign-corrected).

    Not flax's own: its QR of a vmapped key is LAPACK's batched QR, which can deadlock under
    ``jax.vmap`` on jax 0.10's CPU; this one maps the unbatched QR over the batch (one LAPACK
    call per matrix, and vmapped seeds equal single runs exactly). It replaced a Gram-Schmidt
    scan that also never hung but made every program compile 0.2-0.7 s slower.
    """

    def init(key, shape, dtype=jnp.float32):
        n_cols = shape[-1]
        n_rows = math.prod(shape) // n_cols
        tall = (max(n_rows, n_cols), min(n_rows, n_cols))
        q = _orthonormal_columns(jax.random.normal(key, tall, jnp.float32))
        if n_rows < n_cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


def _dense(features: int, gain: float, name: str | None = None) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=orthogonal(gain),
        bias_init=nn.initializers.zeros,
        name=name,
    )


def _policy_head(module: nn.Module, features):
    """The distribution parameters from ``features``, inside ``module``'s compact call: logits,
    or a Gaussian mean with the state-independent ``log_std`` parameter (``module`` has
    ``action_dim``, ``discrete`` and ``log_std_init``)."""
    head = _dense(module.action_dim, 0.01, name="policy_head")(features)
    if module.discrete:
        return head
    log_std = module.param(
        "log_std", nn.initializers.constant(module.log_std_init), (module.action_dim,)
    )
    return head, log_std


class _Conv3x3(nn.Module):
    """A 3x3 convolution, stride 1, no padding, as one matrix product over the image's patches
    (im2col): ``[..., H, W, C] -> [..., H-2, W-2, features]``, kernel ``[3, 3, C, features]``
    as ``flax.linen.Conv``'s. XLA's CPU convolution (and its gradient, above all under ``vmap``
    over seeds) was 8x slower than this matrix product for MinAtar's 10x10 grids."""

    features: int

    @nn.compact
    def __call__(self, x):
        *_, h, w, c = x.shape
        kernel = self.param("kernel", orthogonal(math.sqrt(2.0)), (3, 3, c, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        patches = jnp.concatenate(
            [x[..., i : i + h - 2, j : j + w - 2, :] for i in range(3) for j in range(3)], axis=-1
        )  # [..., H-2, W-2, 9C], ordered (i, j, c) as the kernel's leading axes
        out = patches @ kernel.reshape(9 * c, self.features)
        return out + bias.reshape((1,) * (out.ndim - 1) + (-1,))


class _Torso(nn.Module):
    """``conv_channels`` 3x3 convolutions (stride 1, no padding, ReLU) over an image
    ``[..., H, W, C]``, flattened, then the ``hidden_sizes`` dense layers. With no convolutions
    the observation is flattened after the batch axes (``obs_rank`` trailing axes)."""

    hidden_sizes: Sequence[int]
    activation: str
    conv_channels: Sequence[int] = ()
    obs_rank: int = 1

    @nn.compact
    def __call__(self, obs):
        batch = obs.shape[: obs.ndim - self.obs_rank]
        x = obs
        for i, channels in enumerate(self.conv_channels):
            x = nn.relu(_Conv3x3(channels, name=f"Conv_{i}")(x))
        x = x.reshape(batch + (-1,))
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(_dense(size, math.sqrt(2.0))(x))
        return x


class ActorCritic(nn.Module):
    """Policy head (logits, or a Gaussian mean with a state-independent log std) and a value head.

    ``shared=True`` puts both heads on one torso; otherwise the actor and the critic have their
    own. ``critic=False`` builds no value head (REINFORCE without a learned baseline).
    ``conv_channels`` puts 3x3 convolutions before the dense layers, for image observations
    ``[H, W, C]`` (the MinAtar paper's network is ``conv_channels=(16,)``, ``hidden_sizes=(128,)``,
    Young & Tian, 2019); otherwise each observation is flattened.
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    shared: bool = False
    critic: bool = True
    log_std_init: float = 0.0
    obs_rank: int = 1  # rank of one observation
    conv_channels: Sequence[int] = ()

    @nn.compact
    def __call__(self, obs):
        torso = lambda name: _Torso(
            self.hidden_sizes, self.activation, tuple(self.conv_channels), self.obs_rank, name=name
        )
        actor_features = torso("actor_torso")(obs)
        dist_params = _policy_head(self, actor_features)
        if not self.critic:
            return dist_params, None
        critic_features = actor_features if self.shared else torso("critic_torso")(obs)
        value = _dense(1, 1.0, name="value_head")(critic_features)[..., 0]
        return dist_params, value


RECURRENT_CELLS = ("gru", "lstm")


# Per gate of each cell, flax's parameter name and whether its input and its recurrent product
# carry a bias (flax's GRUCell and OptimizedLSTMCell).
_GATES = {
    "gru": (("r", True, False), ("z", True, False), ("n", True, True)),
    "lstm": (("i", False, True), ("f", False, True), ("g", False, True), ("o", False, True)),
}


class RecurrentCell(nn.Module):
    """A GRU (Cho et al. 2014) or an LSTM (Hochreiter & Schmidhuber 1997) cell over one step or
    over ``[T, N]`` steps, with the parameters of flax's ``GRUCell`` / ``OptimizedLSTMCell``
    (the same names, shapes, initialisers and values, so checkpoints carry over) and their
    formulas (gates ``x W_i + b_i + h W_h + b_h``; GRU: ``n = tanh(x W_in + b_in + r * (h W_hn +
    b_hn))``, ``h' = (1 - z) n + z h``; LSTM: ``c' = f c + i g``, ``h' = o tanh(c')``).

    ``__call__(carry, x [B, D], reset [B])`` is one step; ``over_time=True`` takes ``x [T, N,
    D]`` and ``reset [T, N]`` and scans only what depends on the carry: every step's input
    products ``x W_i + b_i`` are one ``[T*N, D] x [D, G*H]`` product before the scan, and each
    step's recurrent products one ``[N, H] x [H, G*H]`` product. A ``reset`` step starts from
    the zero carry. The outputs are the new carry and the new ``h`` (every step's, over time).

    Not flax's cells themselves: scanned over time, they compute the input products inside the
    scan, one step at a time (the GRU six products a step, its gradient six more), where the
    sequential work is what a recurrent update waits on. Hoisting them made PPO's GRU program
    1.61x faster at 4 envs, 1.36x at 64 and 1.08x at 1024 (``benchmarks/results/
    recurrent_hoist_cpu/``). Tested against a float64 NumPy loop and flax's cells."""

    cell: str
    features: int

    @nn.compact
    def __call__(self, carry, x, reset, over_time: bool = False):
        # flax's own parameter modules (those of its OptimizedLSTMCell): nn.Dense's names,
        # creation order and initialisers, the products computed here
        gates = _GATES[self.cell]
        h0 = carry if self.cell == "gru" else carry[1]
        inputs = [
            DenseParams(self.features, bias, kernel_init=orthogonal(1.0), name=f"i{g}")(x)
            for g, bias, _ in gates
        ]
        hidden = [
            DenseParams(self.features, bias, kernel_init=orthogonal(1.0), name=f"h{g}")(h0)
            for g, _, bias in gates
        ]

        def stacked(pairs):
            kernel = jnp.concatenate([k for k, _ in pairs], axis=-1)
            zero = jnp.zeros((self.features,), kernel.dtype)
            bias = jnp.concatenate([zero if b is None else b for _, b in pairs])
            return kernel, bias

        def affine(v, kernel, bias):
            return jnp.dot(v, kernel) + bias.reshape((1,) * (v.ndim - 1) + (-1,))

        w_i, b_i = stacked(inputs)
        w_h, b_h = stacked(hidden)
        x_proj = affine(x, w_i, b_i)  # every step's input products at once

        def step(carry, inputs):
            x_t, reset_t = inputs
            carry = jax.tree.map(lambda c: jnp.where(reset_t[:, None], 0.0, c), carry)
            h = carry if self.cell == "gru" else carry[1]
            parts = jnp.split(x_t, len(gates), axis=-1)
            rec = jnp.split(affine(h, w_h, b_h), len(gates), axis=-1)
            if self.cell == "gru":
                r = nn.sigmoid(parts[0] + rec[0])
                z = nn.sigmoid(parts[1] + rec[1])
                n = jnp.tanh(parts[2] + r * rec[2])
                new_h = (1.0 - z) * n + z * h
                return new_h, new_h
            i, f, g, o = (rec[k] + parts[k] for k in range(4))
            new_c = nn.sigmoid(f) * carry[0] + nn.sigmoid(i) * jnp.tanh(g)
            new_h = nn.sigmoid(o) * jnp.tanh(new_c)
            return (new_c, new_h), new_h

        if not over_time:
            return step(carry, (x_proj, reset))
        return jax.lax.scan(step, carry, (x_proj, reset))


class RecurrentActorCritic(nn.Module):
    """A recurrent actor-critic for partially observed environments, one step at a time:
    ``(carry, obs [B, *obs_shape], reset [B]) -> (carry, dist_params, value)``.

    The observation (cast to float32, flattened) goes through the ``hidden_sizes`` dense
    encoder, then a ``cell`` (``"gru"`` or ``"lstm"``, :class:`RecurrentCell`)
    of ``recurrent_size`` units shared by the actor and the critic; each head is one dense layer
    of ``hidden_sizes[-1]`` units, then the output. Where ``reset`` is true the carry is set back
    to :meth:`initial_carry` (zeros) *before* the observation is read, so no memory crosses an
    episode boundary. Initialisation is orthogonal, as :class:`ActorCritic`'s (the recurrent
    kernels too: flax's own orthogonal initialiser runs LAPACK's batched QR under vmap).

    ``critic_apart=True`` gives the critic an encoder and a cell of its own (for TRPO, whose
    critic must not move the actor); the carry is then the pair ``(actor, critic)``.
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64,)
    activation: str = "tanh"
    cell: str = "gru"
    recurrent_size: int = 128
    critic: bool = True
    log_std_init: float = 0.0
    obs_rank: int = 1
    critic_apart: bool = False

    def initial_carry(self, num_envs: int) -> Any:
        h = jnp.zeros((num_envs, self.recurrent_size), jnp.float32)
        one = (h, h) if self.cell == "lstm" else h
        return (one, one) if self.critic and self.critic_apart else one

    def _core(self, carry, obs, reset, prefix: str, over_time: bool):
        """The encoder and the cell: ``(carry, features)``. One step: ``obs [B, ...]``, ``reset
        [B]``. ``over_time``: ``obs [T, N, ...]`` and ``reset [T, N]``; the encoder reads every
        step in one pass and only the cell is scanned (the same floats as one step at a time:
        the dense layers act on each row alike)."""
        act = ACTIVATIONS[self.activation]
        batch = obs.shape[: obs.ndim - self.obs_rank]
        x = jnp.asarray(obs, jnp.float32).reshape(batch + (-1,))
        for i, size in enumerate(self.hidden_sizes):
            x = act(_dense(size, math.sqrt(2.0), name=f"{prefix}encoder_{i}")(x))
        cell = RecurrentCell(self.cell, self.recurrent_size, name=f"{prefix}cell")
        return cell(carry, x, reset, over_time)

    @nn.compact
    def __call__(self, carry, obs, reset, over_time: bool = False):
        """One step, or with ``over_time`` the steps ``[T, N]`` from ``carry`` (what scanning
        the one step gives, the encoder and the heads applied to all steps at once)."""
        act = ACTIVATIONS[self.activation]
        apart = self.critic and self.critic_apart
        actor_carry, features = self._core(carry[0] if apart else carry, obs, reset, "", over_time)
        width = self.hidden_sizes[-1]
        pi = act(_dense(width, math.sqrt(2.0), name="actor_hidden")(features))
        dist_params = _policy_head(self, pi)
        if not self.critic:
            return actor_carry, dist_params, None
        if apart:
            critic_carry, critic_features = self._core(carry[1], obs, reset, "critic_", over_time)
            carry = (actor_carry, critic_carry)
        else:
            carry, critic_features = actor_carry, features
        v = act(_dense(width, math.sqrt(2.0), name="critic_hidden")(critic_features))
        value = _dense(1, 1.0, name="value_head")(v)[..., 0]
        return carry, dist_params, value


def rotary(x: jax.Array, position: jax.Array, base: float = 10_000.0) -> jax.Array:
    """Rotary position embedding (RoPE; Su et al. 2021, "RoFormer"), the half-split form of
    GPT-NeoX and LLaMA: ``x [..., H, d]`` at integer ``position [...]`` (broadcastable to
    ``x``'s leading axes, same rank) -> the same shape, each pair ``(x_i, x_{i + d/2})``
    rotated by the angle ``position * base^(-2i/d)``, ``i = 0..d/2 - 1``. A rotation keeps norms, and
    ``<rotary(q, m), rotary(k, n)>`` depends on ``m - n`` only (both tested). ``d`` even."""
    half = x.shape[-1] // 2
    freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    position = jnp.asarray(position, jnp.float32)[..., None, None]
    angle = position * freq.reshape((1,) * (position.ndim - 1) + (half,))  # [..., 1, d/2]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    a, b = x[..., :half], x[..., half:]
    return jnp.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention, over a whole sequence or one position against a
    key/value cache.

    * ``x [B, L, d]`` (``cache=None``): position ``t`` attends to ``0..t``; returns
      ``(out [B, L, d], (k, v))``, the keys and values of every position ``[B, L, H, d / H]``.
    * ``x [B, d]`` with ``cache=(k, v)`` and ``position [B]``: the token at ``position`` attends
      to the cache's positions ``0..position - 1`` and to itself; its key and value are written
      into the cache at ``position``. Returns ``(out [B, d], cache)``. Places after
      ``position`` are never read, so what they hold does not matter.

    ``softmax(q k^T / sqrt(d / H)) v`` per head (Vaswani et al. 2017), one fused ``qkv``
    projection and an output projection; the two forms give the same numbers up to rounding
    (tested position by position). ``rotary``: queries and keys are rotated by their position
    first (:func:`rotary`), so a score depends on the two positions through their offset only
    (the cache holds rotated keys)."""

    num_heads: int
    rotary: bool = False

    @nn.compact
    def __call__(self, x, cache=None, position=None):
        width = x.shape[-1]
        head_dim = width // self.num_heads
        q, k, v = jnp.split(nn.Dense(3 * width, name="qkv")(x), 3, axis=-1)
        heads = lambda a: a.reshape(a.shape[:-1] + (self.num_heads, head_dim))
        q, k, v = heads(q) / jnp.sqrt(jnp.float32(head_dim)), heads(k), heads(v)
        if self.rotary:
            places = jnp.arange(x.shape[-2])[None, :] if cache is None else position
            q, k = rotary(q, places), rotary(k, places)
        if cache is None:
            length = x.shape[-2]
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
            allowed = jnp.tril(jnp.ones((length, length), jnp.bool_))
            weights = jax.nn.softmax(jnp.where(allowed, scores, -jnp.inf), axis=-1)
            out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
            new_cache = (k, v)
        else:
            k_cache, v_cache = cache
            places = jnp.arange(k_cache.shape[1])
            here = (places[None, :] == position[:, None])[:, :, None, None]
            k_cache = jnp.where(here, k[:, None], k_cache)
            v_cache = jnp.where(here, v[:, None], v_cache)
            scores = jnp.einsum("bhd,bkhd->bhk", q, k_cache)
            allowed = (places[None, :] <= position[:, None])[:, None, :]
            weights = jax.nn.softmax(jnp.where(allowed, scores, -jnp.inf), axis=-1)
            out = jnp.einsum("bhk,bkhd->bhd", weights, v_cache)
            new_cache = (k_cache, v_cache)
        out = out.reshape(out.shape[:-2] + (width,))
        return nn.Dense(width, name="out")(out), new_cache


class CausalEncoder(nn.Module):
    """Causal token features: token embeddings, ``num_layers`` pre-norm blocks (causal
    self-attention, a 4x GELU MLP, each around a residual), a final layer norm (the body of
    :class:`CausalTransformer`). ``positions``: ``"learned"``, a learned embedding per position
    added to the tokens' (GPT-2); ``"rotary"``, none added, queries and keys rotated by their
    position in every block (RoPE, :func:`rotary`: attention sees relative offsets, as in
    LLaMA).

    * ``tokens [B, L]`` -> ``(features [B, L, embed_dim], cache)``: the whole sequence in one
      pass; ``cache`` holds every layer's keys and values ``[B, L, num_heads, head_dim]``.
    * ``tokens [B]`` at ``position [B]`` with ``cache`` -> ``(features [B, embed_dim], cache)``:
      one position against the cache of the positions before it (cached decoding: ``O(L)`` per
      token instead of ``O(L^2)``), the cache updated at ``position``.
    """

    vocab_size: int
    embed_dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    positions: str = "learned"

    @nn.compact
    def __call__(self, tokens, cache=None, position=None):
        length = tokens.shape[-1] if cache is None else cache[0][0].shape[1]
        x = nn.Embed(self.vocab_size + 1, self.embed_dim, name="token_embed")(tokens)
        rotary = self.positions == "rotary"
        if not rotary:
            pos = self.param("pos_embed", nn.initializers.normal(0.02), (length, self.embed_dim))
            x = x + (pos[None] if cache is None else pos[position])
        new_cache = []
        for i in range(self.num_layers):
            h = nn.LayerNorm(name=f"block{i}_ln1")(x)
            attention = CausalSelfAttention(self.num_heads, rotary, name=f"block{i}_attn")
            h, layer_cache = attention(h, None if cache is None else cache[i], position)
            new_cache.append(layer_cache)
            x = x + h
            h = nn.LayerNorm(name=f"block{i}_ln2")(x)
            h = nn.Dense(4 * self.embed_dim, name=f"block{i}_mlp_in")(h)
            h = nn.Dense(self.embed_dim, name=f"block{i}_mlp_out")(nn.gelu(h))
            x = x + h
        return nn.LayerNorm(name="final_ln")(x), tuple(new_cache)

    def empty_cache(self, batch: int, length: int) -> tuple:
        """A cache for ``batch`` sequences of ``length`` tokens, zeros (nothing written)."""
        shape = (batch, length, self.num_heads, self.embed_dim // self.num_heads)
        zeros = jnp.zeros(shape, jnp.float32)
        return tuple((zeros, zeros) for _ in range(self.num_layers))


class CausalTransformer(nn.Module):
    """A small causal transformer policy over a sequence task's token buffer
    (:mod:`jaxpg.sequence`): ``obs int32[..., L + 1]`` (``L`` tokens, then the position ``p`` of
    the next token) -> ``(logits [..., action_dim], value [...], cache)``.

    Token and position embeddings of ``embed_dim``, ``num_layers`` pre-norm blocks (causal
    multi-head self-attention with ``num_heads`` heads, then a 4x GELU MLP, each around a
    residual), a final layer norm, and the policy (and value) head read at position ``p - 1``,
    the last token written: the next-token prediction of a language model. The mask makes it
    causal: the output at position ``t`` depends on tokens ``0..t`` only (tested by perturbing
    later tokens), so the padding after ``p - 1`` is never read.

    Two ways to run it, equal up to rounding (tested at every position):

    * ``cache=None``: the whole buffer in one pass (``O(L^2)`` attention); ``cache`` is then
      every position's keys and values, ready for decoding on from ``p``;
    * ``cache`` given (``obs [B, L + 1]``): cached decoding, only position ``p - 1`` (the token
      written since the cache was filled up to ``p - 2``) is computed, ``O(L)``.

    :func:`jaxpg.agents.transformer_agent` keeps the cache in the agent's carry.
    """

    vocab_size: int  # token ids 0..vocab_size-1, and vocab_size for an empty place
    action_dim: int
    embed_dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    critic: bool = True
    positions: str = "learned"  # or "rotary": see CausalEncoder

    @nn.compact
    def __call__(self, obs, cache=None, read_at=None):
        """``read_at [B, K]`` (whole-buffer pass only): read the heads at these places instead
        of ``p - 1``, giving ``logits [B, K, action_dim]`` and ``value [B, K]`` (the outputs of
        ``K`` earlier steps of the same sequence: the pass is causal)."""
        lead = obs.shape[:-1]
        obs = obs.reshape((-1, obs.shape[-1])).astype(jnp.int32)
        tokens, position = obs[:, :-1], obs[:, -1]
        length = tokens.shape[-1]
        last = jnp.clip(position - 1, 0, length - 1)
        encoder = CausalEncoder(
            self.vocab_size,
            self.embed_dim,
            self.num_layers,
            self.num_heads,
            self.positions,
            name="encoder",
        )
        if cache is None:
            features, cache = encoder(tokens)
            if read_at is None:
                at = jnp.take_along_axis(features, last[:, None, None], axis=1)[:, 0]
            else:
                places = jnp.clip(read_at.reshape(obs.shape[0], -1), 0, length - 1)
                at = jnp.take_along_axis(features, places[:, :, None], axis=1)
                lead = lead + (places.shape[1],)
                at = at.reshape((-1, at.shape[-1]))
        else:
            token = jnp.take_along_axis(tokens, last[:, None], axis=1)[:, 0]
            at, cache = encoder(token, cache, last)
        logits = _dense(self.action_dim, 0.01, name="policy_head")(at).reshape(lead + (-1,))
        if not self.critic:
            return logits, None, cache
        value = _dense(1, 1.0, name="value_head")(at)[:, 0].reshape(lead)
        return logits, value, cache
