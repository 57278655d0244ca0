"""Configurations: frozen, validated dataclasses, and the traced hyperparameters.

Two kinds of setting:

* A config field that changes shapes or program structure (the env, ``num_envs``,
  ``num_steps``, epochs, minibatches, layer sizes, booleans) is static: a new value means a new
  compile.
* The hyperparameters in :class:`HParams` (learning rate, gamma, lambda, clip, coefficients,
  max grad norm, baseline decay) are traced float32 arrays inside the train function, so they can
  be vmapped over and changed without recompiling. The config's values are their defaults.

Every field is checked when the config is built; a bad value raises ``ValueError`` naming the
field, the value and what is allowed. Every field's documentation is its ``metadata["help"]``
(which the CLI shows as the flag's help).

A config is hashable, and equal configs hash equal (a dict key, a ``jax.jit`` static argument):
``env_kwargs`` is stored as a ``flax.core.FrozenDict``, and equality compares environment params
field by field (arrays by dtype, shape and contents).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Self

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from jaxpg.envs import Env, make_env
from jaxpg.networks import ACTIVATIONS

NETWORKS = (
    "mlp",
    "cnn",
    "gru",
    "lstm",
    "transformer",
)  # the config's own agents (jaxpg.agents.make_agent)


class HParams(NamedTuple):
    """Hyperparameters that are traced, so a sweep over them is one compiled program.

    Each leaf is a float32 array: a scalar for one run, or with a leading axis for a
    ``jax.vmap`` sweep. Fields an algorithm does not use are ignored by it.
    """

    lr: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array
    clip_eps: jax.Array
    ent_coef: jax.Array
    vf_coef: jax.Array
    max_grad_norm: jax.Array
    baseline_decay: jax.Array
    target_kl: jax.Array  # TRPO's trust region: the largest mean KL of one policy step
    cg_damping: jax.Array  # TRPO: the conjugate gradient solves (F + cg_damping * I) s = g
    kl_coef: jax.Array  # GRPO: weight of the k3 KL penalty towards the reference policy


def _fail(field: str, value: Any, allowed: str):
    raise ValueError(f"{field}={value!r} is invalid: {allowed}")


def _field(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A config field with its documentation in ``metadata["help"]`` (the CLI's flag help)."""
    if not help:
        raise ValueError("a config field needs a help text")
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def _redeclared(name: str, default: Any) -> Any:
    """A subclass's own default for a field of :class:`_CommonConfig`, with that field's help."""
    return _field(default, _CommonConfig.__dataclass_fields__[name].metadata["help"])


def _freeze(value: Any) -> Any:
    """``value`` with every mapping a ``FrozenDict`` and every list a tuple (hashable)."""
    if isinstance(value, Mapping):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    """``value`` with every mapping a ``dict``, every tuple a list and every array a (nested)
    list: what JSON holds."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def env_params_dict(params: Any) -> dict[str, Any] | str:
    """An environment's params as a dict of their fields (arrays as lists), which
    :func:`jaxpg.runs.env_params_with` turns back into the params. Params that are not a
    dataclass (gymnax's are flax struct dataclasses) are recorded by their ``repr``."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return _plain(params)
    return repr(params)


def _key(value: Any) -> Any:
    """A hashable stand-in for a field's value: equal values give equal keys.

    Arrays (whose ``==`` is elementwise and which have no hash) are keyed by dtype, shape and
    bytes; NumPy scalars by their Python value; mappings by their sorted items; lists and tuples
    alike (a JSON round trip turns one into the other); dataclasses (environment params) by
    their type and fields; anything else unhashable by its identity.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return ("nan",) if math.isnan(value) else value
    if isinstance(value, np.generic):
        return _key(value.item())
    if isinstance(value, (np.ndarray, jax.Array)):
        a = np.asarray(value)
        data = tuple(_key(x) for x in a.ravel()) if a.dtype == object else a.tobytes()
        return ("array", a.dtype.str, a.shape, data)
    if isinstance(value, Mapping):
        items = sorted(((str(k), _key(v)) for k, v in value.items()), key=lambda kv: kv[0])
        return ("mapping", tuple(items))
    if isinstance(value, (list, tuple)):
        return ("sequence", tuple(_key(v) for v in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = tuple((f.name, _key(getattr(value, f.name))) for f in dataclasses.fields(value))
        return ("dataclass", type(value), fields)
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class _CommonConfig:
    """The fields every algorithm's config shares (each documented in ``metadata["help"]``).

    Configs are hashable, and equal configs hash equal: a config can be a dict key or a
    ``jax.jit`` static argument. Equality compares the fields by value, with environment params
    compared field by field (arrays by dtype, shape and contents) and an ``env`` given as an
    ``Environment`` instance by identity. Every subclass uses this ``__eq__`` and ``__hash__``
    (``__init_subclass__`` installs them before ``@dataclass`` would generate its own), unless it
    defines its own in its class body.
    """

    # Environment.
    env: Any = _field(
        "CartPole-v1",
        "a gymnax registry name (or seq:TASK, a jaxpg.sequence task), or a gymnax Environment "
        "instance (compared by identity)",
    )
    env_params: Any = _field(
        None,
        "the environment's params (a gymnax params dataclass); None: the environment's default "
        "params",
    )
    env_kwargs: Mapping[str, Any] = _field(
        FrozenDict(),
        "keyword arguments for gymnax.make (or a sequence task's options), stored as an "
        "immutable flax.core.FrozenDict",
    )
    keep_obs: tuple[int, ...] | None = _field(
        None,
        "observation components to keep (the rest hidden: jaxpg.wrappers.MaskObservation), "
        "e.g. 0,2; None: all",
    )
    # Budget and batch shape.
    total_timesteps: int = _field(
        500_000, "env steps in all; num_updates = this // (num_envs * num_steps)"
    )
    num_envs: int = _field(4, "parallel environments (vmapped)")
    num_steps: int | None = _field(
        128,
        "rollout length per environment per update (None: whole episodes, where the mode "
        "allows it)",
    )
    # Optimisation (lr, gamma, ent_coef, vf_coef and max_grad_norm are traced HParams).
    lr: float = _field(2.5e-4, "Adam learning rate")
    anneal_lr: bool = _field(True, "linear decay to 0 over the run")
    adam_eps: float = _field(1e-5, "Adam epsilon")
    max_grad_norm: float = _field(0.5, "clip by global norm")
    gamma: float = _field(0.99, "discount factor")
    ent_coef: float = _field(0.01, "weight of the entropy bonus")
    vf_coef: float = _field(0.5, "weight of the value loss")
    normalize_advantages: bool = _field(True, "zero mean, unit std per minibatch")
    # Networks.
    hidden_sizes: tuple[int, ...] = _field((64, 64), "MLP layer sizes (actor and critic each)")
    activation: str = _field("tanh", "tanh, relu, elu, gelu or swish")
    shared_network: bool = _field(False, "one torso for actor and critic")
    network: str = _field(
        "mlp",
        '"mlp" (observations flattened), "cnn" (image observations [H, W, C]), "gru" or "lstm" '
        '(recurrent), "transformer" (sequence tasks, jaxpg.sequence)',
    )
    embed_dim: int = _field(64, "transformer: width of the token embeddings and blocks")
    num_layers: int = _field(2, "transformer: attention blocks")
    num_heads: int = _field(4, "transformer: attention heads (must divide embed_dim)")
    recurrent_size: int = _field(
        128, "gru/lstm: units of the recurrent cell (hidden_sizes: its encoder)"
    )
    conv_channels: tuple[int, ...] = _field((16,), "cnn: 3x3 convolutions before the hidden layers")
    # Environment wrappers.
    normalize_obs: bool = _field(False, "running mean/std of observations")
    normalize_rewards: bool = _field(False, "divide by the running std of the discounted return")
    clip_actions: bool = _field(
        True, "continuous actions: clip to the bounds (loss uses the raw sample)"
    )

    algorithm = "base"

    # -- validation ----------------------------------------------------------------------
    def __post_init__(self):
        self._coerce_ints("total_timesteps", "num_envs", "num_steps")
        self._check_bools(
            "anneal_lr",
            "normalize_advantages",
            "shared_network",
            "normalize_obs",
            "normalize_rewards",
            "clip_actions",
        )
        self._check_positive_ints("total_timesteps", "num_envs")
        if self.num_steps is not None:
            self._check_positive_ints("num_steps")
        self._check_range("lr", low=0.0, low_open=True)
        self._check_range("adam_eps", low=0.0, low_open=True)
        self._check_range("max_grad_norm", low=0.0, low_open=True)
        self._check_range("gamma", low=0.0, high=1.0)
        self._check_range("ent_coef", low=0.0)
        self._check_range("vf_coef", low=0.0)
        self._check_int_tuple("hidden_sizes", "(64, 64)")
        self._check_int_tuple("conv_channels", "(16,)")
        self._coerce_ints("recurrent_size", "embed_dim", "num_layers", "num_heads")
        self._check_positive_ints("recurrent_size", "embed_dim", "num_layers", "num_heads")
        if self.embed_dim % self.num_heads:
            _fail("num_heads", self.num_heads, f"must divide embed_dim={self.embed_dim}")
        if self.network not in NETWORKS:
            _fail("network", self.network, f"one of {list(NETWORKS)}")
        if self.activation not in ACTIVATIONS:
            _fail("activation", self.activation, f"one of {sorted(ACTIVATIONS)}")
        if not isinstance(self.env_kwargs, Mapping):
            _fail("env_kwargs", self.env_kwargs, "a mapping of keyword arguments for gymnax.make")
        object.__setattr__(self, "env_kwargs", _freeze(self.env_kwargs))
        # Builds the environment once, so a bad name fails here and not inside a trace.
        env = make_env(self.env, self.env_params, **self.env_kwargs)
        if self.keep_obs is not None:
            from jaxpg.wrappers import MaskObservation

            if isinstance(self.keep_obs, list):
                object.__setattr__(self, "keep_obs", tuple(self.keep_obs))
            try:
                env = make_env(MaskObservation(env.env, self.keep_obs), env.params)
            except ValueError as e:
                _fail("keep_obs", self.keep_obs, str(e).split(" is invalid: ")[-1])
        object.__setattr__(self, "_env", env)
        if self.network == "transformer" and not hasattr(self._env.env, "task"):
            _fail(
                "network",
                self.network,
                f"'transformer' reads a sequence task's token buffer "
                f"(jaxpg.sequence, e.g. env='seq:reverse'); {self._env.name} is not one",
            )
        if self.network == "cnn" and len(self._env.obs_shape) != 3:
            _fail(
                "network",
                self.network,
                f"'cnn' needs image observations [H, W, C]; "
                f"{self._env.name}'s have shape {tuple(self._env.obs_shape)} (use 'mlp')",
            )

    def _coerce_ints(self, *names):
        for name in names:
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))

    def _check_int_tuple(self, name, example):
        value = getattr(self, name)
        if isinstance(value, (list, tuple)) and value and all(_is_int(h) and h > 0 for h in value):
            object.__setattr__(self, name, tuple(int(h) for h in value))
        else:
            _fail(name, value, f"a non-empty tuple of positive ints, e.g. {example}")

    def _check_bools(self, *names):
        for name in names:
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                _fail(name, getattr(self, name), "True or False")

    def _check_positive_ints(self, *names):
        for name in names:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                _fail(name, value, "a positive integer")

    def _check_range(self, name, low=None, high=None, low_open=False):
        value = getattr(self, name)
        ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            bound = []
            if low is not None:
                bound.append(f"{'>' if low_open else '>='} {low}")
            if high is not None:
                bound.append(f"<= {high}")
            _fail(name, value, "a finite number " + " and ".join(bound))

    # -- equality and hash ---------------------------------------------------------------
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # @dataclass (eq=True) would write a field-tuple __eq__ and __hash__ into every subclass,
        # which fail on array-valued env params; one set here first is kept.
        for name in ("__eq__", "__hash__"):
            if name not in cls.__dict__:
                setattr(cls, name, getattr(_CommonConfig, name))

    def _eq_key(self) -> tuple:
        """The fields as one hashable tuple (see :func:`_key`); an ``env`` that is not a
        registry name (an ``Environment`` instance) stands for itself, by identity."""
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "env" and not isinstance(value, str):
                out.append((f.name, ("instance", id(value))))
            else:
                out.append((f.name, _key(value)))
        return tuple(out)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self is other or self._eq_key() == other._eq_key()

    def __hash__(self):
        return hash((type(self).__qualname__, self._eq_key()))

    # -- derived -------------------------------------------------------------------------
    @property
    def env_spec(self) -> Env:
        """The built environment (registry lookup done once, at construction)."""
        return self._env  # type: ignore[attr-defined]

    @property
    def batch_size(self) -> int:
        """Env steps per update: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    @property
    def has_critic(self) -> bool:
        return True

    def hparams(self, **overrides: jax.typing.ArrayLike) -> HParams:
        """The traced hyperparameters, from this config's values (and ``overrides``)."""
        unknown = set(overrides) - set(HParams._fields)
        if unknown:
            raise ValueError(
                f"hparams: unknown hyperparameter(s) {sorted(unknown)}; traced ones are "
                f"{list(HParams._fields)}"
            )
        values = {name: getattr(self, name, 0.0) for name in HParams._fields}
        values.update(overrides)
        return HParams(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (plain dicts and lists). An Environment instance is recorded by
        its class name, ``env_params`` as a dict of its fields (arrays as lists; None: the
        environment's defaults), which :func:`jaxpg.runs.config_from_dict` rebuilds."""
        out = {"algorithm": self.algorithm}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "env" and not isinstance(value, str):
                value = f"{type(value).__module__}.{type(value).__qualname__}"
            elif f.name == "env_params":
                value = None if value is None else env_params_dict(value)
            else:
                value = _plain(value)
            out[f.name] = value
        return out

    def _resolve_episode_steps(self, allowed: bool, why: str):
        """``num_steps=None`` -> the environment's ``max_steps_in_episode`` (whole episodes),
        where ``allowed``; ``why`` says where None is allowed."""
        if self.num_steps is not None:
            return
        if not allowed:
            _fail("num_steps", None, f"a positive integer (None only {why})")
        steps = self.env_spec.max_steps_in_episode
        if steps is None:
            _fail(
                "num_steps",
                None,
                "a positive integer: the environment's params have no "
                "max_steps_in_episode to take it from",
            )
        object.__setattr__(self, "num_steps", steps)

    def _check_whole_episodes(self):
        """A one-reward-per-episode rollout must hold a whole episode: ``num_steps`` at least
        the environment's ``max_steps_in_episode`` (a shorter one cuts episodes, whose return is
        then unknown, and may never see a reward that comes only at the end)."""
        limit = self.env_spec.max_steps_in_episode
        if limit is not None and self.num_steps < limit:
            _fail(
                "num_steps",
                self.num_steps,
                f"at least the episode limit max_steps_in_episode = "
                f"{limit} for one reward per episode: a shorter rollout cuts episodes, whose "
                "return is then unknown (None: the episode limit)",
            )

    def _check_batch_fits_budget(self):
        if self.total_timesteps < self.batch_size:
            _fail(
                "total_timesteps",
                self.total_timesteps,
                f"at least one update's worth of env steps, num_envs * num_steps = "
                f"{self.num_envs} * {self.num_steps} = {self.batch_size}",
            )


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclasses.dataclass(frozen=True)
class PPOConfig(_CommonConfig):
    """PPO (Schulman et al., 2017): GAE advantages and the clipped-ratio surrogate.

    Defaults are the usual CartPole-scale ones (as in CleanRL and PureJaxRL).
    """

    num_epochs: int = _field(4, "passes over each batch")
    num_minibatches: int = _field(4, "minibatches per epoch; must divide num_envs * num_steps")
    gae_lambda: float = _field(0.95, "GAE lambda")
    clip_eps: float = _field(0.2, "PPO ratio clip (and value clip)")
    clip_value_loss: bool = _field(True, "PPO2's clipped value loss, with clip_eps")
    mode: str = _field(
        "intermediate",
        '"intermediate" (GAE on fixed-length rollouts) or "trajectory": R(tau) - b on every '
        "step of whole episodes",
    )
    baseline: str = _field(
        "value", 'trajectory mode: "value" (a learned V(s_0)), "moving_average" or "none"'
    )
    baseline_decay: float = _field(
        0.9, "moving-average baseline: b <- decay * b + (1 - decay) * mean(R)"
    )

    algorithm = "ppo"

    def __post_init__(self):
        if self.mode not in REINFORCE_MODES:
            _fail("mode", self.mode, f"one of {list(REINFORCE_MODES)}")
        if self.baseline not in REINFORCE_BASELINES:
            _fail("baseline", self.baseline, f"one of {list(REINFORCE_BASELINES)}")
        if self.mode == "intermediate" and self.baseline != "value":
            _fail(
                "baseline",
                self.baseline,
                "'value' in intermediate mode (GAE needs the critic); "
                "the others only with mode='trajectory'",
            )
        super().__post_init__()
        self._resolve_episode_steps(self.mode == "trajectory", "in trajectory mode")
        if self.mode == "trajectory":
            self._check_whole_episodes()
        self._check_range("baseline_decay", low=0.0, high=1.0)
        self._coerce_ints("num_epochs", "num_minibatches")
        self._check_positive_ints("num_epochs", "num_minibatches")
        self._check_bools("clip_value_loss")
        self._check_range("gae_lambda", low=0.0, high=1.0)
        self._check_range("clip_eps", low=0.0, low_open=True)
        if self.batch_size % self.num_minibatches:
            _fail(
                "num_minibatches",
                self.num_minibatches,
                f"must divide the batch num_envs * num_steps = {self.batch_size}",
            )
        self._check_batch_fits_budget()

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def has_critic(self) -> bool:
        return self.baseline == "value"


@dataclasses.dataclass(frozen=True)
class A2CConfig(_CommonConfig):
    """A2C (Mnih et al., 2016; the synchronous form): GAE advantages and the vanilla
    policy-gradient loss, one gradient step on the whole batch per update.

    The defaults solve CartPole-v1 (the learning test): 16 envs x 32 steps, lr 1e-3 annealed,
    reward scaling, 1M steps. Without reward scaling the critic's large value errors dominate
    the clipped global gradient norm and A2C's single step per batch often collapses.
    """

    total_timesteps: int = _redeclared("total_timesteps", 1_000_000)
    num_envs: int = _redeclared("num_envs", 16)
    num_steps: int = _field(32, "rollout length per environment per update")
    lr: float = _redeclared("lr", 1e-3)
    normalize_rewards: bool = _redeclared("normalize_rewards", True)
    gae_lambda: float = _field(0.95, "GAE lambda")

    algorithm = "a2c"

    def __post_init__(self):
        super().__post_init__()
        self._resolve_episode_steps(
            False, "for whole-episode rollouts: PPO and REINFORCE with mode='trajectory', GRPO"
        )
        self._check_range("gae_lambda", low=0.0, high=1.0)
        self._check_batch_fits_budget()


@dataclasses.dataclass(frozen=True)
class TRPOConfig(_CommonConfig):
    """TRPO (Schulman et al., 2015): GAE advantages and the surrogate ``E[ratio * A]`` under a
    trust region ``mean KL(pi_old || pi) <= target_kl``, by a natural-gradient step (conjugate
    gradient on Fisher-vector products) and a backtracking line search; the critic is fitted
    apart with Adam.

    The trust-region defaults are Stable-Baselines3-contrib's; the batch shape solves
    CartPole-v1 within 200k steps (the learning test). The actor and the critic must not share
    parameters: the policy step moves the actor, Adam moves the critic.
    """

    total_timesteps: int = _redeclared("total_timesteps", 200_000)
    num_envs: int = _redeclared("num_envs", 8)
    num_steps: int | None = _redeclared("num_steps", 128)
    lr: float = _field(1e-3, "the critic's Adam learning rate")
    anneal_lr: bool = _field(False, "linear decay of the critic's learning rate to 0 over the run")
    ent_coef: float = _field(0.0, "unused: TRPO's surrogate has no entropy bonus")
    gae_lambda: float = _field(0.95, "GAE lambda")
    target_kl: float = _field(0.01, "the trust region: the largest mean KL of one policy step")
    cg_iters: int = _field(15, "conjugate-gradient iterations")
    cg_damping: float = _field(0.1, "the conjugate gradient solves (F + cg_damping * I) s = g")
    line_search_shrink: float = _field(0.8, "each backtracking step multiplies the step by this")
    line_search_steps: int = _field(10, "shrinks tried after the full step before giving up")
    critic_epochs: int = _field(10, "passes of Adam over each batch for the critic")
    critic_minibatches: int = _field(4, "minibatches per critic epoch; must divide the batch")

    algorithm = "trpo"

    def __post_init__(self):
        super().__post_init__()
        self._resolve_episode_steps(
            False, "for whole-episode rollouts: PPO and REINFORCE with mode='trajectory', GRPO"
        )
        self._coerce_ints("cg_iters", "line_search_steps", "critic_epochs", "critic_minibatches")
        self._check_positive_ints(
            "cg_iters", "line_search_steps", "critic_epochs", "critic_minibatches"
        )
        self._check_range("gae_lambda", low=0.0, high=1.0)
        self._check_range("target_kl", low=0.0, low_open=True)
        self._check_range("cg_damping", low=0.0)
        shrink = self.line_search_shrink
        if not (
            isinstance(shrink, (int, float)) and not isinstance(shrink, bool) and 0.0 < shrink < 1.0
        ):
            _fail("line_search_shrink", shrink, "a number in (0, 1)")
        if self.shared_network:
            _fail(
                "shared_network",
                True,
                "False for TRPO: the policy step and the critic's Adam "
                "must move separate parameters",
            )
        if self.batch_size % self.critic_minibatches:
            _fail(
                "critic_minibatches",
                self.critic_minibatches,
                f"must divide the batch num_envs * num_steps = {self.batch_size}",
            )
        self._check_batch_fits_budget()


REINFORCE_BASELINES = ("none", "moving_average", "value")
REINFORCE_MODES = ("intermediate", "trajectory")


@dataclasses.dataclass(frozen=True)
class ReinforceConfig(_CommonConfig):
    """REINFORCE (Williams, 1992): ``A_t = G_t - b_t``, one gradient step per batch.

    ``mode="intermediate"`` uses fixed-length rollouts with per-step returns-to-go;
    ``mode="trajectory"`` rolls out whole episodes (``num_steps=None`` means the environment's
    ``max_steps_in_episode``) and gives every step of an episode the advantage ``R(tau) - b``.
    The defaults are the CartPole config that the learning test uses.
    """

    num_envs: int = _redeclared("num_envs", 16)
    num_steps: int | None = _field(
        256, "rollout length; None in trajectory mode: the episode limit"
    )
    lr: float = _redeclared("lr", 3e-3)
    anneal_lr: bool = _redeclared("anneal_lr", False)
    ent_coef: float = _redeclared("ent_coef", 0.0)
    baseline: str = _field("value", '"none", "moving_average" or "value" (a learned critic)')
    baseline_decay: float = _field(
        0.9, "moving-average baseline: b <- decay * b + (1 - decay) * mean(G)"
    )
    mode: str = _field(
        "intermediate",
        '"intermediate" (returns-to-go on fixed-length rollouts) or "trajectory" (R(tau) - b on '
        "whole episodes)",
    )

    algorithm = "reinforce"

    def __post_init__(self):
        if self.baseline not in REINFORCE_BASELINES:
            _fail("baseline", self.baseline, f"one of {list(REINFORCE_BASELINES)}")
        if self.mode not in REINFORCE_MODES:
            _fail("mode", self.mode, f"one of {list(REINFORCE_MODES)}")
        super().__post_init__()
        self._check_range("baseline_decay", low=0.0, high=1.0)
        self._resolve_episode_steps(self.mode == "trajectory", "in trajectory mode")
        if self.mode == "trajectory":
            self._check_whole_episodes()
        self._check_batch_fits_budget()

    @property
    def has_critic(self) -> bool:
        return self.baseline == "value"


@dataclasses.dataclass(frozen=True)
class GRPOConfig(_CommonConfig):
    """GRPO (Shao et al., 2024) and its relatives for environments: group-relative advantages,
    no critic. Each update resets ``num_groups`` groups of ``group_size`` environments, every
    group from one shared key (its members start in the same state), rolls out whole episodes,
    and gives every step of member i's first episode the advantage of its return ``R_i``
    relative to its group (``advantage``: ``"std"`` GRPO, ``"mean"`` Dr. GRPO,
    ``"leave_one_out"`` RLOO); the loss is PPO's clipped surrogate plus ``kl_coef`` times the k3
    KL estimate towards a reference policy.

    The defaults solve CartPole-v1 (the learning test): 4 groups of 8, whole 500-step episodes.
    """

    num_envs: int | None = _field(None, "num_groups * group_size (None: computed from them)")
    num_steps: int | None = _field(None, "rollout length; None: the environment's episode limit")
    lr: float = _redeclared("lr", 3e-3)
    anneal_lr: bool = _redeclared("anneal_lr", False)
    ent_coef: float = _redeclared("ent_coef", 0.0)
    normalize_advantages: bool = _field(False, "the group advantage is already relative")
    num_groups: int = _field(4, "groups per update, each from one shared reset")
    group_size: int = _field(8, "tries per group (>= 2)")
    advantage: str = _field("std", '"std" (GRPO), "mean" (Dr. GRPO) or "leave_one_out" (RLOO)')
    num_epochs: int = _field(4, "passes over each batch")
    num_minibatches: int = _field(4, "minibatches per epoch; must divide num_envs * num_steps")
    clip_eps: float = _field(0.2, "PPO ratio clip")
    kl_coef: float = _field(0.0, "weight of the k3 KL penalty towards the reference policy")
    reference_every: int = _field(
        0, "copy the policy into the reference every this many updates (0: the initial policy)"
    )

    algorithm = "grpo"

    def __post_init__(self):
        from jaxpg.advantages import GROUP_ADVANTAGES

        self._coerce_ints("num_groups", "group_size", "reference_every")
        self._check_positive_ints("num_groups", "group_size")
        if self.group_size < 2:
            _fail("group_size", self.group_size, "at least 2: a group needs others to compare with")
        groups_envs = self.num_groups * self.group_size
        if self.num_envs is None:
            object.__setattr__(self, "num_envs", groups_envs)
        elif self.num_envs != groups_envs:
            _fail(
                "num_envs",
                self.num_envs,
                f"num_groups * group_size = {self.num_groups} * "
                f"{self.group_size} = {groups_envs} (or None)",
            )
        if self.advantage not in GROUP_ADVANTAGES:
            _fail("advantage", self.advantage, f"one of {list(GROUP_ADVANTAGES)}")
        if not _is_int(self.reference_every) or self.reference_every < 0:
            _fail("reference_every", self.reference_every, "a non-negative integer (0: never)")
        super().__post_init__()
        self._resolve_episode_steps(True, "")
        self._check_whole_episodes()
        self._coerce_ints("num_epochs", "num_minibatches")
        self._check_positive_ints("num_epochs", "num_minibatches")
        self._check_range("clip_eps", low=0.0, low_open=True)
        self._check_range("kl_coef", low=0.0)
        if self.batch_size % self.num_minibatches:
            _fail(
                "num_minibatches",
                self.num_minibatches,
                f"must divide the batch num_envs * num_steps = {self.batch_size}",
            )
        self._check_batch_fits_budget()

    @property
    def has_critic(self) -> bool:
        return False


Config = PPOConfig | A2CConfig | TRPOConfig | ReinforceConfig | GRPOConfig
