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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from jaxpg.envs import Env, make_env
from jaxpg.importing import import_path, path_of
from jaxpg.networks import ACTIVATIONS

NETWORKS = (
    "mlp",
    "cnn",
    "gru",
    "lstm",
    "transformer",
)  # the config's own agents (jaxpg.agents.make_agent)


@jax.tree_util.register_pytree_with_keys_class
class HParams:
    """Traced hyperparameters: a pytree of float32 arrays, one per name, read as attributes.

    A config declares which of its fields are traced (``field(..., traced=True)``), and
    :meth:`Config.hparams` gives exactly those, in declaration order: ``hp.lr``, ``hp.gamma``.
    Each leaf is a scalar for one run, or has a leading axis for a ``jax.vmap`` sweep. Asking
    for a name the config does not trace is an ``AttributeError`` that lists the names it has,
    never a silent default.

        hp = HParams(lr=3e-4, gamma=0.99)      # or HParams({"lr": 3e-4, "gamma": 0.99})
        hp.lr, hp["gamma"], "clip_eps" in hp   # -> array(3e-4), array(0.99), False
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None, /, **named: Any):
        object.__setattr__(self, "_values", {**(values or {}), **named})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"hparams has no traced hyperparameter {name!r}: the config traces "
                f"{list(self._values)} (declare it with jaxpg.field(..., traced=True))"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("HParams is immutable: use hparams._replace(name=value)")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self):
        return iter(self._values.values())

    def __len__(self) -> int:
        return len(self._values)

    @property
    def _fields(self) -> tuple[str, ...]:
        """The names, in order (as a NamedTuple's)."""
        return tuple(self._values)

    def _asdict(self) -> dict[str, Any]:
        return dict(self._values)

    def _replace(self, **changes: Any) -> HParams:
        """A copy with ``changes``; every name must be one this ``HParams`` holds."""
        unknown = sorted(set(changes) - set(self._values))
        if unknown:
            raise ValueError(
                f"hparams: unknown hyperparameter(s) {unknown}; traced ones are "
                f"{list(self._values)}"
            )
        return HParams({**self._values, **changes})

    def __repr__(self) -> str:
        return "HParams(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def tree_flatten_with_keys(self) -> tuple[list[tuple[Any, Any]], tuple[str, ...]]:
        children = [(jax.tree_util.GetAttrKey(k), v) for k, v in self._values.items()]
        return children, tuple(self._values)

    @classmethod
    def tree_unflatten(cls, names: tuple[str, ...], leaves: Any) -> HParams:
        return cls(dict(zip(names, leaves)))


def fail(field: str, value: Any, allowed: str) -> None:
    """Raises the ``ValueError`` of a bad config value: ``"{field}={value!r} is invalid:
    {allowed}"``."""
    raise ValueError(f"{field}={value!r} is invalid: {allowed}")


_fail = fail


def field(
    default: Any = dataclasses.MISSING, help: str = "", *, traced: bool = False, **kw: Any
) -> Any:
    """A config field, documented: ``help`` is its ``metadata["help"]`` (the CLI's flag help).

    ``traced=True`` makes it a traced hyperparameter: :meth:`Config.hparams` gives it as a
    float32 array inside the train function, so it can be swept with ``jax.vmap`` in one
    program (``jaxpg.run(sweep={name: [...]})``) and read as ``hp.<name>``. Untraced fields
    are static: a new value is a new compile.
    """
    if not help:
        raise ValueError("a config field needs a help text")
    metadata = {"help": help, "traced": bool(traced)}
    return dataclasses.field(default=default, metadata=metadata, **kw)


_field = field


def _redeclared(name: str, default: Any) -> Any:
    """A subclass's own default for a field of :class:`Config`, with that field's help (and
    whether it is traced)."""
    meta = Config.__dataclass_fields__[name].metadata
    return field(default, meta["help"], traced=meta.get("traced", False))


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
class Config:
    """The base of every algorithm's config: the fields all of them share.

    Each field is documented in its ``metadata["help"]``. Subclass it for an algorithm of
    your own::

        @dataclasses.dataclass(frozen=True)
        class MyConfig(jaxpg.Config):
            my_coef: float = jaxpg.field(0.1, "weight of my term", traced=True)
            algorithm = "my-algo"

            def __post_init__(self):
                super().__post_init__()          # the shared fields, and the environment
                self.check_range("my_coef", low=0.0)

    Validation raises ``ValueError`` naming the field, the value and what is allowed (the
    ``check_*`` methods do it for you; :func:`fail` for a check of your own).

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
    reset_pool: int = _field(
        0,
        "optimistic resets: draw this many fresh starts per step, shared in order by the "
        "environments that finish (for suites whose reset is expensive: Craftax, XLand-MiniGrid); "
        "0: every environment resets afresh",
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
    lr: float = _field(2.5e-4, "Adam learning rate", traced=True)
    anneal_lr: bool = _field(True, "linear decay to 0 over the run")
    adam_eps: float = _field(1e-5, "Adam epsilon")
    max_grad_norm: float = _field(0.5, "clip by global norm", traced=True)
    gamma: float = _field(0.99, "discount factor", traced=True)
    ent_coef: float = _field(0.01, "weight of the entropy bonus", traced=True)
    vf_coef: float = _field(0.5, "weight of the value loss", traced=True)
    normalize_advantages: bool = _field(True, "zero mean, unit std per minibatch")
    # Networks.
    hidden_sizes: tuple[int, ...] = _field((64, 64), "MLP layer sizes (actor and critic each)")
    activation: str = _field("tanh", "tanh, relu, elu, gelu or swish")
    shared_network: bool = _field(False, "one torso for actor and critic")
    network: str = _field(
        "mlp",
        '"mlp" (observations flattened), "cnn" (image observations [H, W, C]), "gru" or "lstm" '
        '(recurrent), "transformer" (sequence tasks, jaxpg.sequence), or a policy of your own '
        'as "module:attr": a flax module class or instance called as module(carry, obs, reset), '
        "or a function (config, **network_kwargs) -> agent",
    )
    network_kwargs: Mapping[str, Any] = _field(
        FrozenDict(),
        "keyword arguments for a policy of your own given as network='module:attr' (its "
        "flax module's fields, or its factory's keyword arguments)",
    )
    embed_dim: int = _field(64, "transformer: width of the token embeddings and blocks")
    num_layers: int = _field(2, "transformer: attention blocks")
    num_heads: int = _field(4, "transformer: attention heads (must divide embed_dim)")
    positions: str = _field(
        "learned",
        'transformer: "learned" (a position embedding added to the tokens\', GPT-2) or '
        '"rotary" (queries and keys rotated by position, RoPE: attention sees offsets)',
    )
    recurrent_size: int = _field(
        128, "gru/lstm: units of the recurrent cell (hidden_sizes: its encoder)"
    )
    conv_channels: tuple[int, ...] = _field((16,), "cnn: 3x3 convolutions before the hidden layers")
    # Environment wrappers.
    normalize_obs: bool = _field(False, "running mean/std of observations")
    normalize_rewards: bool = _field(False, "divide by the running std of the discounted return")
    reward_scale: float = _field(
        1.0,
        "multiply the rewards learned from by this constant (Brax's reward_scaling); "
        "returns are reported unscaled",
    )
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
        self._check_range("reward_scale", low=0.0, low_open=True)
        self._check_int_tuple("hidden_sizes", "(64, 64)")
        self._check_int_tuple("conv_channels", "(16,)")
        self._coerce_ints("recurrent_size", "embed_dim", "num_layers", "num_heads")
        self._check_positive_ints("recurrent_size", "embed_dim", "num_layers", "num_heads")
        if self.embed_dim % self.num_heads:
            _fail("num_heads", self.num_heads, f"must divide embed_dim={self.embed_dim}")
        if self.positions not in ("learned", "rotary"):
            _fail("positions", self.positions, '"learned" or "rotary"')
        if self.positions == "rotary" and (self.embed_dim // self.num_heads) % 2:
            _fail(
                "positions",
                self.positions,
                f'"learned" here: "rotary" needs an even head width, and embed_dim / num_heads '
                f"= {self.embed_dim // self.num_heads}",
            )
        if self.network not in NETWORKS:
            self._check_network_path()
        if self.activation not in ACTIVATIONS:
            _fail("activation", self.activation, f"one of {sorted(ACTIVATIONS)}")
        if not isinstance(self.env_kwargs, Mapping):
            _fail("env_kwargs", self.env_kwargs, "a mapping of keyword arguments for gymnax.make")
        object.__setattr__(self, "env_kwargs", _freeze(self.env_kwargs))
        if not isinstance(self.network_kwargs, Mapping):
            _fail("network_kwargs", self.network_kwargs, "a mapping of keyword arguments")
        object.__setattr__(self, "network_kwargs", _freeze(self.network_kwargs))
        if self.network_kwargs and self.network in NETWORKS:
            _fail(
                "network_kwargs",
                dict(self.network_kwargs),
                f"empty for network={self.network!r} (its fields are the config's own); "
                "only a policy given as network='module:attr' takes keyword arguments",
            )
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
        self._coerce_ints("reset_pool")
        if self.reset_pool < 0:
            _fail("reset_pool", self.reset_pool, "an int >= 0 (0: no optimistic resets)")
        if self.reset_pool:
            if not env._standard_step:
                _fail(
                    "reset_pool",
                    self.reset_pool,
                    f"0 for {env.name}, which overrides gymnax's Environment.step (optimistic "
                    "resets replace the reset inside it)",
                )
            env = dataclasses.replace(env, reset_pool=self.reset_pool)
        object.__setattr__(self, "_env", env)
        if self.network == "transformer" and not hasattr(self._env.env, "task"):
            _fail(
                "network",
                self.network,
                f"'transformer' reads a sequence task's token buffer "
                f"(jaxpg.sequence, e.g. env='seq:reverse'); {self._env.name} is not one",
            )
        if self._env.pytree_obs and self.normalize_obs:
            _fail(
                "normalize_obs",
                True,
                f"False for {self._env.name}, whose observations are a pytree "
                f"({type(self._env.obs_spec).__name__}); normalisation needs one array",
            )
        if self.network == "cnn" and (self._env.pytree_obs or len(self._env.obs_shape) != 3):
            _fail(
                "network",
                self.network,
                f"'cnn' needs image observations [H, W, C]; "
                f"{self._env.name}'s have shape {tuple(self._env.obs_shape)} (use 'mlp')",
            )

    def _check_network_path(self):
        """``network`` given as ``"module:attr"``: an importable policy of your own (a flax
        module class or instance, or a function ``config -> agent``; :func:`jaxpg.agents.make_agent`)."""
        allowed = (
            f"one of {list(NETWORKS)}, or a policy of your own as 'module:attr' (a flax module "
            "class or instance, or a function config -> agent)"
        )
        if not isinstance(self.network, str) or ":" not in self.network:
            _fail("network", self.network, allowed)
        try:
            import_path(self.network)
        except (ImportError, AttributeError, ValueError) as e:
            _fail("network", self.network, f"{allowed}; importing it failed: {e}")

    def _coerce_ints(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                object.__setattr__(self, name, int(value))

    def _check_int_tuple(self, name: str, example: str) -> None:
        value = getattr(self, name)
        if isinstance(value, (list, tuple)) and value and all(_is_int(h) and h > 0 for h in value):
            object.__setattr__(self, name, tuple(int(h) for h in value))
        else:
            _fail(name, value, f"a non-empty tuple of positive ints, e.g. {example}")

    def _check_bools(self, *names: str) -> None:
        for name in names:
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                _fail(name, getattr(self, name), "True or False")

    def _check_positive_ints(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                _fail(name, value, "a positive integer")

    def _check_range(
        self,
        name: str,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
    ) -> None:
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
                setattr(cls, name, getattr(Config, name))

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

    @property
    def actor_critic_apart(self) -> bool:
        """Whether the algorithm needs the actor and the critic to read disjoint parameters
        (TRPO: its critic's Adam must not move the actor). jaxpg's recurrent network then gives
        the critic an encoder and a cell of its own; its MLP already keeps them apart unless
        ``shared_network``."""
        return False

    @classmethod
    def traced_fields(cls) -> tuple[str, ...]:
        """The names of the traced hyperparameters (fields declared ``traced=True``), in
        declaration order: what :meth:`hparams` holds and what a sweep may vary."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("traced"))

    def hparams(self, **overrides: jax.typing.ArrayLike) -> HParams:
        """The traced hyperparameters, from this config's values (and ``overrides``): exactly
        the fields declared ``traced=True``; any other name is a ``ValueError``."""
        names = self.traced_fields()
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(
                f"hparams: unknown hyperparameter(s) {unknown}; {type(self).__name__}'s traced "
                f"ones are {list(names)}"
            )
        values = {name: overrides.get(name, getattr(self, name)) for name in names}
        return HParams({k: jnp.asarray(v, jnp.float32) for k, v in values.items()})

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (plain dicts and lists). An Environment instance is recorded by
        its class name, ``env_params`` as a dict of its fields (arrays as lists; None: the
        environment's defaults), which :func:`jaxpg.runs.config_from_dict` rebuilds."""
        out = {"algorithm": self.algorithm}
        path = path_of(type(self))
        if path is not None and not path.startswith("jaxpg."):
            out["config_class"] = path  # an algorithm of your own: its module registers it
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

    def _check_whole_episodes(self) -> None:
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

    def _check_batch_fits_budget(self) -> None:
        if self.total_timesteps < self.batch_size:
            _fail(
                "total_timesteps",
                self.total_timesteps,
                f"at least one update's worth of env steps, num_envs * num_steps = "
                f"{self.num_envs} * {self.num_steps} = {self.batch_size}",
            )

    def _check_divides_batch(self, name: str) -> None:
        """``name`` (already a positive int) divides the batch ``num_envs * num_steps``."""
        if self.batch_size % getattr(self, name):
            _fail(
                name,
                getattr(self, name),
                f"must divide the batch num_envs * num_steps = {self.batch_size}",
            )

    # The checks, public for a config of your own (each raises the ValueError that names the
    # field, the value and what is allowed).
    check_range = _check_range
    check_positive_ints = _check_positive_ints
    check_bools = _check_bools
    check_int_tuple = _check_int_tuple
    coerce_ints = _coerce_ints
    check_batch_fits_budget = _check_batch_fits_budget
    check_divides_batch = _check_divides_batch


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# -- sweeps: the traced hyperparameters of many settings ----------------------------------------


def check_sweep_names(config: Config, names: Iterable[str]) -> None:
    """A ``ValueError`` for a name that is not one of ``config``'s traced hyperparameters
    (saying whether it is a static field, which cannot be swept in one program)."""
    sweepable = config.traced_fields()
    for name in names:
        if name in sweepable:
            continue
        if hasattr(config, name):
            raise ValueError(
                f"sweep: {name!r} is a static config field (it changes shapes or program "
                f"structure), so it cannot be swept in one program; build one config per value. "
                f"Sweepable: {list(sweepable)}"
            )
        raise ValueError(f"sweep: unknown hyperparameter {name!r}; sweepable: {list(sweepable)}")


def stack_hparams(config: Config, settings: Sequence[dict]) -> HParams:
    """One :class:`HParams` with leading axis ``len(settings)``; unspecified fields come from
    ``config``."""
    if not settings:
        raise ValueError("sweep: no settings to sweep over")
    for s in settings:
        check_sweep_names(config, s)
    rows = [config.hparams(**s) for s in settings]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *rows)
