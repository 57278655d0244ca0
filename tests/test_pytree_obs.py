"""Pytree observations and legal-action masks, on a toy env whose answer is known
(``toy_envs.MaskedChoiceEnv``): the spec, the flattening, the mask in training and evaluation."""

import compile_options
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import MaskedChoiceEnv

import jaxpg
from jaxpg.agents import ILLEGAL_LOGIT, as_agent, flatten_obs
from jaxpg.envs import make_env
from jaxpg.ppo import PPOConfig


def _config(**kw):
    base = dict(env=MaskedChoiceEnv(), num_envs=8, num_steps=8, total_timesteps=64 * 40, lr=1e-2)
    return PPOConfig(**{**base, **kw})


def test_spec_and_flattening():
    env = make_env(MaskedChoiceEnv())
    assert env.pytree_obs and env.obs_shape == (5,) and env.action_mask is not None
    assert set(env.obs_spec) == {"action_mask", "clock"}
    obs = {"action_mask": jnp.array([[True, False, True, False]]), "clock": jnp.array([[0.5]])}
    # leaves in jax.tree.leaves order (dict keys sorted): the mask, then the clock
    np.testing.assert_array_equal(flatten_obs(obs, env.obs_spec), [[1, 0, 1, 0, 0.5]])
    assert env.batch_shape(env.dummy_obs((3, 2))) == (3, 2)


def test_mask_applies_to_every_kind_of_agent():
    config = _config()
    agent = as_agent(None, config)
    params = agent.init(jax.random.key(0))
    obs = {"action_mask": jnp.array([[True, False, False, True]]), "clock": jnp.zeros((1, 1))}
    _, logits, _ = agent.apply(params, (), obs, jnp.zeros((1,), bool))
    np.testing.assert_array_equal(np.asarray(logits[0, 1:3]), [ILLEGAL_LOGIT, ILLEGAL_LOGIT])
    assert np.all(np.asarray(logits[0, [0, 3]]) > ILLEGAL_LOGIT / 2)
    # a user's (init, apply) pair that knows nothing of the mask is masked too
    init = lambda key: {"b": jnp.zeros(4)}
    apply = lambda p, c, o, r: (c, jnp.broadcast_to(p["b"], (o["clock"].shape[0], 4)), None)
    user = as_agent((init, apply), config)
    _, logits, _ = user.apply(init(None), (), obs, jnp.zeros((1,), bool))
    assert np.asarray(logits)[0, 1] == ILLEGAL_LOGIT


def test_no_illegal_action_in_training_or_evaluation():
    config = _config()
    state = jaxpg.init_state(config, jax.random.key(1))
    collected = jax.jit(jaxpg.make_collect(config))(state)
    tr = collected.transitions
    legal = np.take_along_axis(
        np.asarray(tr.obs["action_mask"]), np.asarray(tr.action)[..., None], -1
    )[..., 0]
    assert legal.all()
    # the log-probabilities are the masked distribution's: finite, and legal actions sum to 1
    assert np.isfinite(np.asarray(tr.log_prob)).all()
    assert np.asarray(tr.reward).max() <= 3  # an illegal action would have paid 10
    # evaluation samples from the same masked policy
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(2))
    policy = jaxpg.make_policy(config)
    obs = {
        "action_mask": jnp.array([[True, False, False, False]] * 64),
        "clock": jnp.zeros((64, 1)),
    }
    actions = policy.act(result.params, obs, jax.random.key(3))
    assert np.all(np.asarray(actions) == 0)
    episodes = jaxpg.evaluate.evaluate(config, result.params, jax.random.key(4), 32)
    assert np.asarray(episodes.finished).all()
    assert np.asarray(episodes.episode_return).max() <= 3 * MaskedChoiceEnv.limit


@pytest.mark.learning
def test_learns_the_best_legal_action():
    # the best legal action pays its index; always choosing it earns E[max legal index] per step
    # = 3/2 + 2/4 + 1/8 = 2.125 (P(3 legal) = 1/2, P(2 best) = 1/4, P(1 best) = 1/8)
    config = _config(total_timesteps=64 * 150)
    result = compile_options.jit(jaxpg.make_train(config))(jax.random.key(0))
    final = float(np.nanmean(np.asarray(result.metrics["episode_return"])[-10:]))
    assert final > 0.9 * 8 * 2.125, final


def test_pytree_obs_refuses_normalisation():
    with pytest.raises(ValueError, match="normalize_obs"):
        _config(normalize_obs=True)
