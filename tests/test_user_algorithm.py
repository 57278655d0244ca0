"""A user's algorithm through the public protocol: A2C written from scratch here (its own
targets, loss and optimiser step, nothing from jaxpg.algorithms or jaxpg.updates), trained
through ``make_train(config, algorithm=...)``. It matches the shipped A2C and learns CartPole."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxpg
from jaxpg.agents import unroll
from jaxpg.distributions import action_dist


def my_a2c(config, agent) -> jaxpg.Algorithm:
    """GAE + the vanilla policy gradient, one clipped Adam step on the whole batch."""
    dist = action_dist(config.env_spec.discrete)

    def optimizer(hp, lr):
        return optax.chain(
            optax.clip_by_global_norm(hp.max_grad_norm),
            optax.scale_by_adam(eps=config.adam_eps),
            optax.scale(-lr),
        )

    def init(params, hp):
        return optimizer(hp, hp.lr).init(params), ()  # no state of its own

    def start(key, env_carry):
        return env_carry  # the environments go on where the last update left them

    def targets(tr, hp, algo_state):
        adv, returns = jaxpg.advantages.gae(
            tr.reward, tr.value, tr.next_value, tr.terminated, tr.truncated, hp.gamma, hp.gae_lambda
        )
        ones = jnp.ones_like(adv)
        return jaxpg.Targets(adv, returns, ones, ones), algo_state

    def loss(params, batch, hp):
        tr = batch.transitions
        _, dist_params, value = unroll(agent, params, batch.agent_carry, tr.obs, tr.reset)
        log_prob = dist.log_prob(dist_params, tr.action)
        adv = batch.targets.advantages
        adv = jax.lax.stop_gradient((adv - adv.mean()) / (adv.std() + 1e-8))
        policy_loss = -jnp.mean(log_prob * adv)
        value_loss = 0.5 * jnp.mean(jnp.square(value - batch.targets.returns))
        entropy = jnp.mean(dist.entropy(dist_params))
        total = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
        return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}

    def update(params, opt_state, algo_state, batch, hp, update_step, key):
        lr = hp.lr * jnp.maximum(1.0 - update_step / config.num_updates, 0.0)
        (total, aux), grads = jax.value_and_grad(loss, has_aux=True)(params, batch, hp)
        step, new_opt_state = optimizer(hp, lr).update(grads, opt_state, params)
        grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        return jaxpg.UpdateResult(
            keep(optax.apply_updates(params, step), params),
            keep(new_opt_state, opt_state),
            algo_state,
            {**aux, "learning_rate": lr},
            finite,
        )

    return jaxpg.Algorithm(init, start, targets, update)


def test_my_a2c_matches_the_shipped_a2c():
    config = jaxpg.A2CConfig(env="CartPole-v1", total_timesteps=16 * 32 * 4)
    mine = jax.jit(jaxpg.make_train(config, algorithm=my_a2c))(jax.random.key(3))
    shipped = jax.jit(jaxpg.make_train(config))(jax.random.key(3))
    for a, b in zip(jax.tree.leaves(mine.params), jax.tree.leaves(shipped.params), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=0)
    for name in ("policy_loss", "value_loss", "entropy", "episode_return", "learning_rate"):
        np.testing.assert_allclose(mine.metrics[name], shipped.metrics[name], rtol=2e-5, atol=2e-6)
