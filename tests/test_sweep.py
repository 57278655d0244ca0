"""Hyperparameter sweeps: one compiled program, members equal single runs, static fields refused.

Tolerances: a sweep member is not bit-equal to the single run. ``vmap`` turns each dense layer
into a batched matmul, which XLA:CPU computes with other kernels (another summation order)
than the unbatched one, so the two differ in the last float32 bits from the first forward pass
on. Over these few updates that stays below 2e-6 on the losses and 3e-7 on the parameters
(measured); the test allows 1e-5. The trajectories themselves are identical: the same
episodes end at the same steps (checked exactly).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jit_counts import compiles

import jaxpg
from jaxpg import sweep as sweep_lib

TOL = dict(rtol=1e-5, atol=1e-5)
LOSS_METRICS = ("loss", "policy_loss", "value_loss", "entropy", "grad_norm", "approx_kl")


@pytest.fixture(autouse=True)
def _strict_rank_promotion():
    with jax.numpy_rank_promotion("raise"):
        yield


def tiny_ppo(**kw):
    base = dict(
        env="CartPole-v1",
        num_envs=4,
        num_steps=16,
        num_minibatches=2,
        num_epochs=2,
        total_timesteps=4 * 16 * 4,
    )
    return jaxpg.PPOConfig(**{**base, **kw})


def tiny_reinforce(**kw):
    base = dict(
        env="CartPole-v1",
        num_envs=4,
        num_steps=16,
        baseline="moving_average",
        total_timesteps=4 * 16 * 3,
    )
    return jaxpg.ReinforceConfig(**{**base, **kw})


def member(tree, k, s):
    return jax.tree.map(lambda x: x[k, s], tree)


def assert_same_run(single, swept):
    np.testing.assert_array_equal(single.metrics["episodes"], swept.metrics["episodes"])
    np.testing.assert_array_equal(single.metrics["env_steps"], swept.metrics["env_steps"])
    np.testing.assert_allclose(
        single.metrics["episode_return"], swept.metrics["episode_return"], **TOL
    )
    for name in LOSS_METRICS:
        np.testing.assert_allclose(single.metrics[name], swept.metrics[name], **TOL, err_msg=name)
    chex.assert_trees_all_close(single.params, swept.params, **TOL)


# -- sweep member == single run -------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, values",
    [
        (tiny_ppo(), dict(lr=[1e-4, 1e-3], clip_eps=[0.1, 0.3])),
        (tiny_reinforce(), dict(lr=[1e-3, 1e-2], baseline_decay=[0.5, 0.95])),
    ],
    ids=["ppo", "reinforce"],
)
def test_sweep_member_equals_single_run(config, values):
    hparams, settings = sweep_lib.grid(config, **values)
    keys = jax.random.split(jax.random.key(3), 2)
    swept = jax.device_get(jax.jit(sweep_lib.make_sweep(config))(keys, hparams))  # NumPy
    assert swept.metrics["loss"].shape == (len(settings), 2, config.num_updates)

    single = jax.jit(jaxpg.make_train(config))
    for k, setting in enumerate(settings):
        for s in range(2):
            # The single run gets its hyperparameters as traced values, one setting at a time
            one = jax.device_get(single(keys[s], config.hparams(**setting)))
            assert_same_run(one, member(swept, k, s))
    # and, for the last setting, from a config that holds them: no sweep machinery at all
    # (config.hparams is what builds the sweep's batch too)
    own = jax.jit(jaxpg.make_train(config.replace(**settings[-1])))(keys[1])
    assert_same_run(jax.device_get(own), member(swept, len(settings) - 1, 1))
    # The hyperparameters were really used: different settings, different agents.
    assert not np.allclose(swept.metrics["loss"][0, 0], swept.metrics["loss"][-1, 0])


# -- one compiled program ---------------------------------------------------------------------


def test_three_learning_rates_by_four_seeds_is_one_program_and_never_recompiles():
    config = tiny_ppo()
    chex.clear_trace_counter()
    sweep = jax.jit(chex.assert_max_traces(sweep_lib.make_sweep(config), n=1))
    keys = jax.random.split(jax.random.key(0), 4)

    hparams, _ = sweep_lib.grid(config, lr=[1e-4, 3e-4, 1e-3])
    first = sweep(keys, hparams)
    assert first.metrics["loss"].shape == (3, 4, config.num_updates)

    # Other values of every traced hyperparameter, and other seeds: same program.
    other, _ = sweep_lib.grid(
        config,
        lr=[2e-4, 5e-4, 2e-3],
        gamma=[0.9],
        gae_lambda=[0.8],
        clip_eps=[0.3],
        ent_coef=[0.0],
        vf_coef=[1.0],
        max_grad_norm=[1.0],
    )
    other_keys = jax.random.split(jax.random.key(1), 4)
    drawn, _ = sweep_lib.random_search(config, jax.random.key(2), 3, lr=(1e-5, 1e-2, "log"))
    with compiles() as compiled_again:
        second = sweep(other_keys, other)  # a retrace would raise
        sweep(keys, drawn)  # a random search of the same size reuses it too
    assert compiled_again == []
    assert not np.allclose(first.metrics["loss"], second.metrics["loss"])

    # Ahead of time: one executable serves any values of these shapes.
    compiled = sweep.lower(keys, hparams).compile()
    again = compiled(jax.random.split(jax.random.key(1), 4), other)
    np.testing.assert_allclose(again.metrics["loss"], second.metrics["loss"], rtol=1e-6, atol=1e-6)


# -- building the hyperparameter batch --------------------------------------------------------


def test_grid_is_the_cartesian_product_with_config_defaults():
    config = tiny_ppo(gamma=0.97)
    hparams, settings = sweep_lib.grid(config, lr=[1e-4, 1e-3], ent_coef=[0.0, 0.01, 0.1])
    assert settings[:2] == [{"lr": 1e-4, "ent_coef": 0.0}, {"lr": 1e-4, "ent_coef": 0.01}]
    assert len(settings) == 6
    for leaf in hparams:
        assert leaf.shape == (6,) and leaf.dtype == jnp.float32
    np.testing.assert_allclose(hparams.lr, [1e-4] * 3 + [1e-3] * 3, rtol=1e-7)
    np.testing.assert_allclose(hparams.ent_coef, [0.0, 0.01, 0.1] * 2, rtol=1e-7)
    np.testing.assert_allclose(hparams.gamma, [0.97] * 6, rtol=1e-7)  # from the config
    np.testing.assert_allclose(hparams.clip_eps, [config.clip_eps] * 6, rtol=1e-7)


def test_random_search_draws_inside_the_ranges():
    config = tiny_ppo()
    hparams, settings = sweep_lib.random_search(
        config, jax.random.key(0), 50, lr=(1e-5, 1e-2, "log"), clip_eps=(0.1, 0.3)
    )
    assert len(settings) == 50 and hparams.lr.shape == (50,)
    lr, clip = np.asarray(hparams.lr), np.asarray(hparams.clip_eps)
    assert lr.min() >= 1e-5 * (1 - 1e-6) and lr.max() <= 1e-2 * (1 + 1e-6)
    assert clip.min() >= 0.1 - 1e-7 and clip.max() <= 0.3 + 1e-7
    # Log-uniform: about as many draws in each decade.
    assert np.sum(lr < 1e-4) > 5 and np.sum(lr > 1e-3) > 5
    again, _ = sweep_lib.random_search(
        config, jax.random.key(0), 50, lr=(1e-5, 1e-2, "log"), clip_eps=(0.1, 0.3)
    )
    np.testing.assert_array_equal(hparams.lr, again.lr)  # the key decides


@pytest.mark.parametrize(
    "field", ["num_envs", "num_steps", "hidden_sizes", "num_minibatches", "anneal_lr"]
)
def test_static_fields_are_refused_with_a_clear_message(field):
    with pytest.raises(
        ValueError, match=rf"'{field}' is a static config field.*one config per value"
    ):
        sweep_lib.grid(tiny_ppo(), **{field: [1, 2]})
    with pytest.raises(ValueError, match=rf"'{field}' is a static config field"):
        sweep_lib.random_search(tiny_ppo(), jax.random.key(0), 2, **{field: (1, 2)})


def test_bad_sweep_requests_are_refused():
    config = tiny_ppo()
    with pytest.raises(ValueError, match="unknown hyperparameter 'learning_rate'.*sweepable"):
        sweep_lib.grid(config, learning_rate=[1e-3])
    with pytest.raises(ValueError, match="non-empty list"):
        sweep_lib.grid(config, lr=[])
    with pytest.raises(ValueError, match="log range needs low > 0"):
        sweep_lib.random_search(config, jax.random.key(0), 2, lr=(0.0, 1e-3, "log"))
    with pytest.raises(ValueError, match=r"\(low, high\)"):
        sweep_lib.random_search(config, jax.random.key(0), 2, lr=(1e-4,))
    with pytest.raises(ValueError, match="no settings"):
        sweep_lib.stack_hparams(config, [])


def test_make_sweep_explains_unbatched_hyperparameters():
    config = tiny_ppo()
    sweep = sweep_lib.make_sweep(config)
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="leading axis of settings"):
        jax.eval_shape(sweep, keys, config.hparams())
    with pytest.raises(ValueError, match="keys"):
        hparams, _ = sweep_lib.grid(config, lr=[1e-3])
        jax.eval_shape(sweep, jax.random.key(0), hparams)


def test_parse_sweep_spec():
    assert sweep_lib.parse_sweep_spec(["lr=1e-4,3e-4,1e-3", "ent-coef=0,0.01"]) == {
        "lr": [1e-4, 3e-4, 1e-3],
        "ent_coef": [0.0, 0.01],
    }
    with pytest.raises(ValueError, match="NAME=V1,V2"):
        sweep_lib.parse_sweep_spec(["lr"])
    with pytest.raises(ValueError, match="numbers"):
        sweep_lib.parse_sweep_spec(["lr=fast"])


def test_results_table_has_a_row_per_setting_and_seed():
    # [K=2, S=3, num_updates=4] metrics, as a sweep returns them; NaN: no episode ended.
    returns = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    returns[0, 1, 2:] = np.nan
    returns[1, 2, :] = np.nan
    metrics = {
        "episode_return": returns,
        "env_steps": np.broadcast_to(np.arange(1, 5) * 64, (2, 3, 4)),
    }
    settings = [{"lr": 1e-4}, {"lr": 1e-3}]
    rows = sweep_lib.results_table(metrics, settings, seeds=[10, 11, 12])
    assert [(r["lr"], r["seed"]) for r in rows] == [
        (1e-4, 10),
        (1e-4, 11),
        (1e-4, 12),
        (1e-3, 10),
        (1e-3, 11),
        (1e-3, 12),
    ]
    # The last 10% of 4 updates is the last one (ceil(0.4) = 1).
    assert rows[0]["final_return"] == 3.0
    assert np.isnan(rows[1]["final_return"])  # no episode ended in the last update
    assert np.isnan(rows[5]["final_return"])
    assert rows[4]["final_return"] == 19.0
    longer = {k: np.concatenate([v] * 5, axis=-1) for k, v in metrics.items()}  # 20 updates
    rows = sweep_lib.results_table(longer, settings, seeds=[10, 11, 12])
    assert rows[0]["final_return"] == 2.5  # the last 2 of 20 updates: (2 + 3) / 2
    assert all(r["env_steps"] == 256 for r in rows)
    with pytest.raises(ValueError, match="3 settings for 2 swept"):
        sweep_lib.results_table(metrics, settings + settings[:1])
