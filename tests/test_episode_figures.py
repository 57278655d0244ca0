"""The figures of the fresh-reset modes (issue 24): what the reported episode statistics count,
episodes cut off by the end of the rollout, the moving-average baseline's timing, and group
advantages over the members whose outcome is known. Each against a NumPy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_protocols import hparams, numbered_batch

import jaxpg
from jaxpg.advantages import MovingAverageBaseline, group_advantages
from jaxpg.algorithms import finished_first_episode_mask, trajectory_targets
from jaxpg.rollout import episode_stats


def numpy_first_episode_stats(done, returns, lengths):
    T, N = done.shape
    got_r, got_l = [], []
    for n in range(N):
        for t in range(T):
            if done[t, n]:
                got_r.append(returns[t, n])
                got_l.append(lengths[t, n])
                break
    mean_r = np.mean(got_r) if got_r else np.nan
    mean_l = np.mean(got_l) if got_l else np.nan
    return mean_r, mean_l, len(got_r), 1.0 - len(got_r) / N


def stats_batch(done, returns, lengths):
    T, N = done.shape
    return numbered_batch(T, N).transitions._replace(
        episode_done=jnp.asarray(done),
        episode_return=jnp.asarray(np.where(done, returns, 0.0), jnp.float32),
        episode_length=jnp.asarray(np.where(done, lengths, 0), jnp.int32),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_episode_stats_against_numpy(seed):
    rng = np.random.default_rng(seed)
    T, N = 9, 6
    done = rng.random((T, N)) < 0.3
    done[:, 0] = False  # one environment whose first episode never ends
    returns = rng.normal(size=(T, N)).astype(np.float32)
    lengths = rng.integers(1, 50, size=(T, N))
    stats = episode_stats(stats_batch(done, returns, lengths), first_only=True)
    mean_r, mean_l, count, cut = numpy_first_episode_stats(done, returns, lengths)
    np.testing.assert_allclose(float(stats["episode_return"]), mean_r, rtol=1e-5)
    np.testing.assert_allclose(float(stats["episode_length"]), mean_l, rtol=1e-5)
    assert int(stats["episodes"]) == count
    np.testing.assert_allclose(float(stats["episodes_cut"]), cut, rtol=1e-6)
    # every episode (the continuing modes): all ends count
    every = episode_stats(stats_batch(done, returns, lengths))
    np.testing.assert_allclose(float(every["episode_return"]), returns[done].mean(), rtol=1e-5)
    assert "episodes_cut" not in every


def test_first_episode_stats_are_what_a_trajectory_update_learns_from():
    """One REINFORCE trajectory-mode update on CartPole: 500-step rollouts from fresh resets
    hold several episodes per environment under a random policy. The reported return is the
    mean of the first episodes (the ones learned from), not of every episode that ended."""
    config = jaxpg.ReinforceConfig(
        env="CartPole-v1", num_envs=8, num_steps=None, mode="trajectory", total_timesteps=4000
    )
    state = jaxpg.init_state(config, jax.random.key(3))
    collected = jax.jit(jaxpg.make_collect(config))(state)
    _, metrics = jax.jit(jaxpg.make_learn(config))(state, collected)
    tr = collected.transitions
    done = np.asarray(tr.episode_done)
    returns, lengths = np.asarray(tr.episode_return), np.asarray(tr.episode_length)
    mean_r, mean_l, count, cut = numpy_first_episode_stats(done, returns, lengths)
    assert done.sum() > count  # second episodes ended inside the rollout: the case at issue
    np.testing.assert_allclose(float(metrics["episode_return"]), mean_r, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["episode_length"]), mean_l, rtol=1e-5)
    assert int(metrics["episodes"]) == count == config.num_envs
    assert float(metrics["episodes_cut"]) == cut == 0.0
    # the first episode's return is the sum of its rewards
    first = np.asarray(finished_first_episode_mask(tr.terminated, tr.truncated))
    np.testing.assert_allclose((np.asarray(tr.reward) * first).sum(0).mean(), mean_r, rtol=1e-5)


def test_trajectory_targets_mask_an_unfinished_first_episode_and_use_the_old_baseline():
    T, N = 5, 3
    term = np.zeros((T, N), bool)
    trunc = np.zeros((T, N), bool)
    term[1, 0] = True  # env 0: first episode of 2 steps, then a second one
    trunc[4, 1] = True  # env 1: first episode cut by its time limit at the last step
    # env 2: its first episode is still running when the rollout ends
    r = np.arange(1, T * N + 1, dtype=np.float32).reshape(T, N)
    batch = numbered_batch(T, N).transitions._replace(
        reward=jnp.asarray(r), terminated=jnp.asarray(term), truncated=jnp.asarray(trunc)
    )
    old = MovingAverageBaseline(jnp.float32(4.0), jnp.int32(2))
    targets, new = trajectory_targets("moving_average")(batch, hparams(baseline_decay=0.5), old)
    mask = np.zeros((T, N))
    mask[:2, 0] = 1.0
    mask[:, 1] = 1.0
    np.testing.assert_array_equal(np.asarray(targets.mask), mask)
    R = (r * mask).sum(0)
    want = (R - 4.0)[None, :] * mask  # the baseline from before the batch
    np.testing.assert_allclose(np.asarray(targets.advantages), want, rtol=1e-6)
    # the baseline moves with the finished episodes only
    np.testing.assert_allclose(float(new.value), 0.5 * 4.0 + 0.5 * R[:2].mean(), rtol=1e-6)
    # a learned baseline is not trained towards an unknown return
    targets_v, _ = trajectory_targets("value")(batch, hparams(), old)
    np.testing.assert_array_equal(np.asarray(targets_v.value_mask)[0], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(targets_v.value_mask)[1:], 0.0)


def numpy_masked_group_advantages(R, valid, kind, eps=1e-8):
    out = np.zeros_like(R)
    for g in range(R.shape[0]):
        idx = np.flatnonzero(valid[g])
        if len(idx) < 2:
            continue
        x = R[g, idx]
        for i, j in enumerate(idx):
            if kind == "std":
                out[g, j] = (x[i] - x.mean()) / (x.std() + eps)
            elif kind == "mean":
                out[g, j] = x[i] - x.mean()
            else:
                out[g, j] = x[i] - np.delete(x, i).mean()
    return out


@pytest.mark.parametrize("kind", ["std", "mean", "leave_one_out"])
def test_group_advantages_over_known_outcomes_against_numpy(kind):
    rng = np.random.default_rng(4)
    R = rng.normal(size=(5, 4)).astype(np.float32)
    valid = rng.random((5, 4)) < 0.7
    valid[0] = True  # a whole group
    valid[1] = [True, False, False, False]  # one known outcome: nothing to compare with
    valid[2] = False
    R[~valid] = np.nan  # an unknown outcome is never read
    got = np.asarray(group_advantages(R, kind, mask=valid))
    np.testing.assert_allclose(got, numpy_masked_group_advantages(R, valid, kind), atol=1e-5)
    # with every outcome known, the mask changes nothing
    R = np.where(valid, R, 0.5)
    np.testing.assert_allclose(
        np.asarray(group_advantages(R, kind, mask=np.ones_like(valid))),
        np.asarray(group_advantages(R, kind)),
        rtol=1e-6,
    )
