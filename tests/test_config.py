"""Configs as values: every field documented in its metadata, hashable, equal configs hash
equal (dict keys, ``jax.jit`` static arguments), ``env_kwargs`` an immutable mapping and
environment params compared by their fields. No training (no train compile)."""

import dataclasses
import types

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import FrozenDict

from jaxpg import registry, runs
from jaxpg.a2c import A2CConfig
from jaxpg.config import Config, _freeze, _plain
from jaxpg.ppo import PPOConfig
from jaxpg.reinforce import ReinforceConfig

pytestmark = pytest.mark.timeout(120)


def _acrobot_params(torque):
    # Acrobot's params hold an array (available_torque, float32 [3]).
    return runs.env_params_with("Acrobot-v1", {"available_torque": torque}, {})


# --- help metadata -----------------------------------------------------------------------


@pytest.mark.parametrize("name", registry.names())
def test_every_field_has_help_metadata(name):
    cls = registry.config_class(name)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if not (isinstance(f.metadata.get("help"), str) and f.metadata["help"].strip())
    ]
    assert not missing, f"{cls.__name__} fields without a help text: {missing}"


def test_a_subclass_redeclaration_has_its_own_help():
    fields = {f.name: f for f in dataclasses.fields(ReinforceConfig)}
    common = {f.name: f for f in dataclasses.fields(Config)}
    assert fields["mode"].metadata["help"]
    assert fields["lr"].default == 3e-3 and common["lr"].default == 2.5e-4
    assert fields["lr"].metadata["help"] == "Adam learning rate"


# --- hash and equality -------------------------------------------------------------------


@pytest.mark.parametrize("name", registry.names())
def test_default_configs_hash_and_equal_ones_hash_equal(name):
    cls = registry.config_class(name)
    a, b = cls(), cls()
    assert a is not b and a == b and hash(a) == hash(b)
    assert cls.__eq__ is Config.__eq__ and cls.__hash__ is Config.__hash__
    assert {a: 1}[b] == 1


@pytest.mark.parametrize(
    "kw",
    [
        dict(env="seq:reverse", env_kwargs={"prompt_length": 5}),
        dict(env="Breakout-MinAtar", env_kwargs={"use_minimal_action_set": False}, network="cnn"),
    ],
    ids=["seq", "minatar"],
)
def test_config_with_env_kwargs_hashes(kw):
    a, b = PPOConfig(**kw), PPOConfig(**kw)
    assert isinstance(a.env_kwargs, FrozenDict)
    assert a == b and hash(a) == hash(b)
    assert hash(a.env_kwargs) == hash(b.env_kwargs)
    assert a != PPOConfig(**{**kw, "env_kwargs": {}})


def test_env_kwargs_accepts_any_mapping_and_stays_a_plain_dict_in_to_dict():
    plain = PPOConfig(env="seq:reverse", env_kwargs={"prompt_length": 5})
    proxy = PPOConfig(env="seq:reverse", env_kwargs=types.MappingProxyType({"prompt_length": 5}))
    frozen = PPOConfig(env="seq:reverse", env_kwargs=FrozenDict(prompt_length=5))
    assert plain == proxy == frozen and hash(plain) == hash(proxy) == hash(frozen)
    assert plain.env_kwargs["prompt_length"] == 5
    d = plain.to_dict()["env_kwargs"]
    assert type(d) is dict and d == {"prompt_length": 5}
    with pytest.raises(ValueError, match=r"env_kwargs=\[\('prompt_length', 5\)\] is invalid"):
        PPOConfig(env="seq:reverse", env_kwargs=[("prompt_length", 5)])


def test_env_kwargs_is_immutable_and_frozen_all_the_way_down():
    config = PPOConfig(env="seq:reverse", env_kwargs={"prompt_length": 5})
    with pytest.raises(ValueError, match="immutable"):
        config.env_kwargs["prompt_length"] = 6
    # Nested mappings and lists freeze too (as FrozenDict and tuples), so the mapping hashes.
    nested = _freeze({"a": [1, {"b": [2, 3]}]})
    assert hash(nested) == hash(_freeze({"a": (1, {"b": (2, 3)})}))
    assert _plain(nested) == {"a": [1, {"b": [2, 3]}]}


def test_config_with_non_default_env_params_hashes():
    params = runs.env_params_with("CartPole-v1", {"max_steps_in_episode": 200}, {})
    a = PPOConfig(env_params=params, total_timesteps=1024)
    b = PPOConfig(env_params=params.replace(), total_timesteps=1024)
    assert a == b and hash(a) == hash(b)
    assert a != PPOConfig(total_timesteps=1024)  # None (the defaults) is another value
    assert a != a.replace(env_params=params.replace(max_steps_in_episode=300))


def test_array_env_params_compare_by_dtype_shape_and_contents():
    base = gymnax.make("Acrobot-v1")[1]
    assert isinstance(base.available_torque, jax.Array)  # the case this test is about
    a = PPOConfig(env="Acrobot-v1", env_params=_acrobot_params([-2.0, 0.0, 2.0]))
    b = PPOConfig(env="Acrobot-v1", env_params=_acrobot_params([-2.0, 0.0, 2.0]))
    assert a.env_params.available_torque is not b.env_params.available_torque
    assert a == b and hash(a) == hash(b)
    assert a != a.replace(env_params=_acrobot_params([-2.0, 0.0, 1.0]))
    as_numpy = base.replace(available_torque=np.array([-2.0, 0.0, 2.0], np.float32))
    assert a == a.replace(env_params=as_numpy)  # the same dtype, shape and values
    as_float64 = base.replace(available_torque=np.array([-2.0, 0.0, 2.0], np.float64))
    assert a != a.replace(env_params=as_float64)
    assert PPOConfig(env="Acrobot-v1", env_params=base) == PPOConfig(
        env="Acrobot-v1", env_params=gymnax.make("Acrobot-v1")[1]
    )


def test_an_environment_instance_compares_by_identity():
    env = gymnax.make("CartPole-v1")[0]
    a, b = PPOConfig(env=env), PPOConfig(env=env)
    assert a == b and hash(a) == hash(b)
    other = PPOConfig(env=gymnax.make("CartPole-v1")[0])
    assert a != other
    assert a != PPOConfig()  # the registry name is not the instance


@pytest.mark.parametrize(
    "change",
    [
        dict(lr=1e-3),
        dict(anneal_lr=False),
        dict(hidden_sizes=(32,)),
        dict(num_envs=8),
        dict(env="Acrobot-v1"),
        dict(env_kwargs={"prompt_length": 6}),
        dict(keep_obs=(0, 1)),
        dict(clip_eps=0.3),
    ],
    ids=lambda c: next(iter(c)),
)
def test_configs_differing_in_one_field_are_unequal(change):
    base = dict(env="seq:reverse", env_kwargs={"prompt_length": 5})
    if "env" in change:
        base = {}
    a = PPOConfig(**base)
    b = PPOConfig(**{**base, **change})
    assert a != b and hash(a) != hash(b)
    assert a == PPOConfig(**base)


def test_configs_of_different_algorithms_are_unequal():
    assert PPOConfig() != A2CConfig()
    assert PPOConfig() != "PPOConfig()"


def test_config_is_a_jit_static_argument():
    traces = []

    def scaled(x, config):
        traces.append(config)
        return x * config.num_envs

    scaled = jax.jit(scaled, static_argnums=1)
    params = _acrobot_params([-1.0, 0.0, 1.0])
    a = PPOConfig(env="Acrobot-v1", env_params=params)
    assert float(scaled(jnp.float32(2.0), a)) == 8.0
    assert float(scaled(jnp.float32(2.0), PPOConfig(env="Acrobot-v1", env_params=params))) == 8.0
    assert len(traces) == 1  # the equal config hit the compiled cache
    scaled(jnp.float32(2.0), a.replace(num_envs=8))
    assert len(traces) == 2


def test_a_users_plain_dataclass_subclass_keeps_the_value_equality():
    @dataclasses.dataclass(frozen=True)  # eq=True: would generate a field-tuple __eq__/__hash__
    class MyConfig(A2CConfig):
        my_coef: float = 0.5

        algorithm = "my-a2c"

    assert MyConfig.__eq__ is Config.__eq__
    a = MyConfig(env="Acrobot-v1", env_params=_acrobot_params([-1.0, 0.0, 1.0]))
    b = MyConfig(env="Acrobot-v1", env_params=_acrobot_params([-1.0, 0.0, 1.0]))
    assert a == b and hash(a) == hash(b)
    assert a != a.replace(my_coef=0.25)


# --- to_dict ------------------------------------------------------------------------------


def test_to_dict_records_env_params_as_their_fields():
    assert PPOConfig().to_dict()["env_params"] is None
    config = PPOConfig(env="Acrobot-v1", env_params=_acrobot_params([-1.0, 0.0, 1.0]))
    recorded = config.to_dict()["env_params"]
    assert recorded["available_torque"] == [-1.0, 0.0, 1.0]
    assert recorded["max_steps_in_episode"] == 500
    assert set(recorded) == {f.name for f in dataclasses.fields(config.env_params)}


def test_a_name_registered_twice_names_both_config_classes(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))

    def config_class():
        @dataclasses.dataclass(frozen=True)
        class TwiceConfig(A2CConfig):
            algorithm = "twice"

        return TwiceConfig

    first, second = config_class(), config_class()
    registry.register("twice", first, lambda config, agent: None)
    assert registry.for_config(first()).config_class is first
    registry.register("twice", second, lambda config, agent: None)  # replaces the first
    with pytest.raises(ValueError, match="registered twice") as error:
        registry.for_config(first())
    assert str(error.value).count("TwiceConfig") == 2 and "test_config:" in str(error.value)
    with pytest.raises(ValueError, match=r"TwiceConfig.algorithm must be 'other'"):
        registry.register("other", second, lambda config, agent: None)
