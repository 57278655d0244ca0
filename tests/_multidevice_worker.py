"""Runs multi-device checks and prints their measurements as JSON (the last line of stdout):
``{check: measurements}``, or ``{check: {"raised": traceback}}`` for a check that raised.

Started by ``tests/test_multidevice.py`` in a subprocess whose environment sets
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` before JAX is imported: the flag only
takes effect in a fresh process. All the checks run in one process, one after another (each
process start, jax's and jaxpg's imports and the 4-device backend, costs about 4 s on a 2-core
CPU). Usage: ``python _multidevice_worker.py CHECK [CHECK ...]``.
"""

from __future__ import annotations

import json
import sys
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from jit_counts import compiles  # tests/ is this script's folder, so it is on sys.path
from trees import raw_leaves, trees_equal

import jaxpg
from jaxpg import distributed as dist
from jaxpg import sweep as sweep_lib


def _leaf_diff(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape:
        return float("inf")  # no broadcasting: another shape is a real difference
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return float("inf")  # NaN in one run only: a real difference
    return float(np.max(np.abs(np.nan_to_num(x) - np.nan_to_num(y)), initial=0.0))


def max_abs_diff(a, b) -> float:
    """Largest absolute difference over two trees; NaNs must sit at the same places."""
    return max(jax.tree.leaves(jax.tree.map(_leaf_diff, a, b)), default=0.0)


def key_data(key):
    return np.asarray(jax.random.key_data(key))


def compare_runs(one, many) -> dict:
    """Measurements of a 4-device TrainResult against the one-device one."""
    out = {
        name: max_abs_diff(one.metrics[name], many.metrics[name])
        for name in (
            "loss",
            "policy_loss",
            "value_loss",
            "entropy",
            "grad_norm",
            "approx_kl",
            "explained_variance",
            "learning_rate",
        )
    }
    out["episode_return"] = max_abs_diff(
        one.metrics["episode_return"], many.metrics["episode_return"]
    )
    out["params"] = max_abs_diff(one.params, many.params)
    out["obs_stats"] = max_abs_diff(one.state.env.obs_stats, many.state.env.obs_stats)
    out["reward_stats"] = max_abs_diff(one.state.env.reward_stats, many.state.env.reward_stats)
    out["env_obs"] = max_abs_diff(one.state.env.obs, many.state.env.obs)
    out["episodes_equal"] = bool(np.array_equal(one.metrics["episodes"], many.metrics["episodes"]))
    out["keys_equal"] = bool(np.array_equal(key_data(one.state.key), key_data(many.state.key)))
    out["env_obs_spec"] = str(many.state.env.obs.sharding.spec)
    out["obs_stats_replicated"] = bool(many.state.env.obs_stats.mean.sharding.is_fully_replicated)
    out["params_replicated"] = all(
        leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(many.params)
    )
    out["loss_curve_1"] = np.asarray(one.metrics["loss"]).tolist()
    out["loss_curve_4"] = np.asarray(many.metrics["loss"]).tolist()
    return out


def tiny_ppo(**kw):
    # 8 envs: 2 per device; minibatches of 32 rows, 8 per device; both normalisers on, so the
    # running statistics must be global means too.
    base = dict(
        env="CartPole-v1",
        num_envs=8,
        num_steps=16,
        num_minibatches=4,
        num_epochs=2,
        total_timesteps=8 * 16 * 4,
        normalize_obs=True,
        normalize_rewards=True,
    )
    return jaxpg.PPOConfig(**{**base, **kw})


# -- checks ---------------------------------------------------------------------------------------


def check_gradient() -> dict:
    """The PPO loss's gradient on one fixed batch: rows sharded over 4 devices vs one device."""
    from jaxpg.agents import make_agent
    from jaxpg.algorithms import Minibatch, actor_critic_loss, ppo_surrogate
    from jaxpg.distributions import action_dist

    config = tiny_ppo()
    agent = make_agent(config)
    params = agent.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    rows = 64
    batch = Minibatch(
        obs=rng.normal(size=(rows, 4)).astype(np.float32),
        action=rng.integers(0, 2, size=rows).astype(np.int32),
        old_log_prob=(np.log(0.5) + 0.3 * rng.normal(size=rows)).astype(np.float32),
        old_value=rng.normal(size=rows).astype(np.float32),
        advantages=rng.normal(size=rows).astype(np.float32),
        returns=rng.normal(size=rows).astype(np.float32),
        mask=(rng.random(rows) < 0.8).astype(np.float32),  # masked means must be global too
        value_mask=np.ones(rows, np.float32),
        reset=np.zeros(rows, bool),
        agent_carry=(),
    )
    hp = config.hparams()

    def loss_fn(p, mb, normalize_advantages=True):
        return actor_critic_loss(
            p,
            mb,
            hp,
            agent=agent,
            dist=action_dist(True),
            surrogate=ppo_surrogate,
            normalize_advantages=normalize_advantages,
            clip_value_loss=True,
        )[0]

    grad = jax.jit(jax.grad(loss_fn))
    single = grad(params, jax.tree.map(jnp.asarray, batch))

    mesh = dist.make_mesh()
    sharded_batch = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
    replicated_params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    many = grad(replicated_params, sharded_batch)
    hlo = grad.lower(replicated_params, sharded_batch).compile().as_text()

    out = {
        "num_devices": len(jax.devices()),
        "batch_spec": str(sharded_batch.obs.sharding.spec),
        "grad_abs_diff": max_abs_diff(single, many),
        "grad_max_abs": max_abs_diff(single, jax.tree.map(jnp.zeros_like, single)),
        # Each device differentiates its own rows, then the partial gradients are summed.
        "sharded_program_all_reduces": "all-reduce" in hlo,
    }

    # The shard_map route and its trap, shown without advantage normalisation (a per-device
    # normalisation would use per-device statistics) and with the mask all ones, so the
    # global loss is the mean of the per-device losses.
    shard_map = getattr(jax, "shard_map", None)
    if shard_map is not None:
        plain = batch._replace(mask=np.ones(rows, np.float32))
        want = jax.jit(jax.grad(lambda p, mb: loss_fn(p, mb, False)))(params, plain)
        specs = dict(
            mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec("data")), out_specs=PartitionSpec()
        )

        def pmean_of_loss(p, mb):
            return jax.grad(lambda q: jax.lax.pmean(loss_fn(q, mb, False), "data"))(p)

        def pmean_of_grad(p, mb):
            return jax.lax.pmean(jax.grad(lambda q: loss_fn(q, mb, False))(p), "data")

        right = jax.jit(shard_map(pmean_of_loss, **specs))(params, plain)
        trap = jax.jit(shard_map(pmean_of_grad, **specs))(params, plain)
        out["shard_map_pmean_loss_diff"] = max_abs_diff(want, right)
        ratios = jax.tree.map(
            lambda t, w: float(np.sum(np.asarray(t) * np.asarray(w)) / np.sum(np.asarray(w) ** 2)),
            trap,
            want,
        )
        out["shard_map_trap_ratio"] = float(np.median(jax.tree.leaves(ratios)))
    return out


def check_ppo_training() -> dict:
    """make_sharded_train, and sharded init + two chunks of 2 updates, vs one device."""
    config = tiny_ppo()
    key = jax.random.key(7)
    one = jax.jit(jaxpg.make_train(config))(key)
    many = dist.make_sharded_train(config)(key)
    return {**compare_runs(one, many), "chunks": chunks_vs(one, config, key)}


def check_reinforce_training() -> dict:
    # Trajectory mode re-creates the env carry every update; the moving-average baseline is a
    # global mean of the episode returns.
    short = jaxpg.make_env("CartPole-v1").params.replace(max_steps_in_episode=32)
    config = jaxpg.ReinforceConfig(
        env="CartPole-v1",
        env_params=short,
        num_envs=8,
        num_steps=32,
        mode="trajectory",
        baseline="moving_average",
        total_timesteps=8 * 32 * 3,
        normalize_obs=True,
    )
    key = jax.random.key(3)
    one = jax.jit(jaxpg.make_train(config))(key)
    many = dist.make_sharded_train(config)(key)
    out = compare_runs(one, many)
    out["baseline"] = max_abs_diff(one.state.algo_state, many.state.algo_state)
    return out


def chunks_vs(one, config, key) -> dict:
    from jaxpg.train import policy_params

    state = dist.make_sharded_init(config)(key)
    init_spec = str(state.env.obs.sharding.spec)
    chunk = dist.make_sharded_train_chunk(config, config.num_updates // 2)
    state, first = chunk(state)
    with compiles() as again:
        state, second = chunk(state)
    loss = np.concatenate([np.asarray(first["loss"]), np.asarray(second["loss"])])
    placed = dist.shard_state(config, jax.jit(jaxpg.make_init(config))(key))
    return {
        "init_spec": init_spec,
        "loss": max_abs_diff(one.metrics["loss"], loss),
        "params": max_abs_diff(one.params, policy_params(config, state)),
        "update_step": int(state.update_step),
        "second_chunk_compiles": len(again),
        "shard_state_spec": str(placed.env.obs.sharding.spec),
        "shard_state_stats_replicated": bool(
            placed.env.obs_stats.mean.sharding.is_fully_replicated
        ),
    }


def check_sharded_sweep() -> dict:
    config = tiny_ppo(normalize_obs=False, normalize_rewards=False, num_envs=4)
    hparams, _ = sweep_lib.grid(config, lr=[1e-4, 1e-3])
    keys = jax.random.split(jax.random.key(5), 2)
    plain = jax.jit(sweep_lib.make_sweep(config))(keys, hparams)
    spread = dist.make_sharded_sweep(config)
    many = spread(keys, hparams)
    seeds_only = spread(jax.random.split(jax.random.key(5), 4))  # K = 1, S = 4
    one_setting = jax.tree.map(lambda x: jnp.asarray(x)[None], config.hparams())  # K = 1
    seeds_plain = jax.jit(sweep_lib.make_sweep(config))(
        jax.random.split(jax.random.key(5), 4), one_setting
    )
    out = {
        "shape": list(many.metrics["loss"].shape),
        "loss": max_abs_diff(plain.metrics["loss"], many.metrics["loss"]),
        "params": max_abs_diff(plain.params, many.params),
        "episodes_equal": bool(np.array_equal(plain.metrics["episodes"], many.metrics["episodes"])),
        "seeds_only_shape": list(seeds_only.metrics["loss"].shape),
        "seeds_only_devices": len(seeds_only.metrics["loss"].sharding.device_set),
        "seeds_only_loss": max_abs_diff(seeds_plain.metrics["loss"], seeds_only.metrics["loss"]),
        "seeds_only_params": max_abs_diff(seeds_plain.params, seeds_only.params),
    }
    try:
        spread(jax.random.split(jax.random.key(5), 3), hparams)
    except ValueError as err:
        out["indivisible_error"] = str(err)

    # A host loop of chunks over flat members (the CLI's seeds): init + two chunks == one run.
    import functools

    keys4 = jax.random.split(jax.random.key(5), 4)
    hp4 = jax.tree.map(lambda x: jnp.broadcast_to(x, (4,)), config.hparams())
    init = dist.spread_members(jax.vmap(functools.partial(jaxpg.init_state, config)))
    chunk = dist.spread_members(jax.vmap(jaxpg.make_train_chunk(config, config.num_updates // 2)))
    states = init(keys4, hp4)
    out["members_spec"] = str(states.env.obs.sharding.spec)
    states, first = chunk(states)
    with compiles() as again:
        states, second = chunk(states)
    loss = np.concatenate([np.asarray(first["loss"]), np.asarray(second["loss"])], axis=-1)
    out["chunks_loss"] = max_abs_diff(seeds_only.metrics["loss"][0], loss)
    out["chunks_params"] = max_abs_diff(
        jax.tree.map(lambda x: x[0], seeds_only.state.params), states.params
    )
    out["second_chunk_compiles"] = len(again)
    try:
        init(
            jax.random.split(jax.random.key(5), 6),
            jax.tree.map(lambda x: jnp.broadcast_to(x, (6,)), config.hparams()),
        )
    except ValueError as err:
        out["uneven_members_error"] = str(err)
    return out


def check_indivisible_num_envs() -> dict:
    out = {}
    try:
        dist.make_sharded_train(tiny_ppo(num_envs=6, num_minibatches=2))
    except ValueError as err:
        out["error"] = str(err)
    return out


def check_spread_run(tmp: str | None = None) -> dict:
    """jaxpg.run(spread=True): 4 members, one per device, with a checkpoint and a resume,
    against the same run on one device."""
    import tempfile

    import jaxpg
    from jaxpg.checkpoint import CheckpointError, restore_checkpoint

    config = tiny_ppo()
    common = dict(seeds=4, progress=False, chunk_updates=2, verbose=False)
    one = jaxpg.run(config, **common)
    with tempfile.TemporaryDirectory() as tmp:
        first = jaxpg.run(config, spread=True, run_dir=f"{tmp}/run", stop_after=2, **common)
        spec = str(jax.tree.leaves(first.state.params)[0].sharding.spec)
        # The checkpoint read spread: each device holds its own member, the values the same.
        whole, _ = restore_checkpoint(f"{tmp}/run/checkpoints", config)
        spread, _ = restore_checkpoint(
            f"{tmp}/run/checkpoints", config, sharding=dist.member_sharding()
        )
        uneven = None
        try:  # 4 members over 3 devices
            three = jax.sharding.Mesh(np.array(jax.devices()[:3]), ("data",))
            restore_checkpoint(
                f"{tmp}/run/checkpoints", config, sharding=dist.member_sharding(three)
            )
        except CheckpointError as err:
            uneven = str(err)
        per_device = {s.data.shape[0] for x in raw_leaves(spread) for s in x.addressable_shards}
        many = jaxpg.resume(f"{tmp}/run", spread=True, progress=False, chunk_updates=2,
                            verbose=False)  # fmt: skip
        # Resumed again, complete: nothing to train, the state read back spread as it was
        done = jaxpg.resume(f"{tmp}/run", spread=True, progress=False, verbose=False)
        done_spec = str(jax.tree.leaves(done.state.params)[0].sharding.spec)
    return {
        "status": [first.status, many.status, done.status],
        "done": [done.updates_done, config.num_updates],
        "done_spec": done_spec,
        "done_params": max_abs_diff(many.state.params, done.state.params),
        "spec": spec,
        "restored_per_device": sorted(per_device),
        "restored_equal": trees_equal(whole, spread),
        "restored_uneven_error": uneven,
        "params": max_abs_diff(one.state.params, many.state.params),
        "loss": float(np.max(np.abs(one.table["loss"] - many.table["loss"]))),
    }


CHECKS = {
    "spread_run": check_spread_run,
    "gradient": check_gradient,
    "ppo_training": check_ppo_training,
    "reinforce_training": check_reinforce_training,
    "sharded_sweep": check_sharded_sweep,
    "indivisible_num_envs": check_indivisible_num_envs,
}


def run_check(name: str) -> dict:
    try:
        return {**CHECKS[name](), "device_count": jax.device_count()}
    except Exception:  # reported to the test that asked for this check, which fails with it
        return {"raised": traceback.format_exc()}


if __name__ == "__main__":
    print(json.dumps({name: run_check(name) for name in sys.argv[1:]}))
