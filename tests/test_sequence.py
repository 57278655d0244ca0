"""Sequence tasks (jaxpg.sequence): the environment's episode and reward, each built-in reward
against a hand-computed case, the transformer's causality and its cached decoding against the
whole-buffer pass, a user's own task trained through the public API, and bad tasks refused when
built."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpg
from jaxpg.agents import make_agent, scan_apply, unroll
from jaxpg.distributions import action_dist
from jaxpg.evaluate import evaluate_task
from jaxpg.networks import CausalEncoder, CausalTransformer, rotary
from jaxpg.rollout import RolloutOptions, env_carry_init, rollout
from jaxpg.sequence import (
    SequenceTask,
    add_task,
    copy_task,
    echo_task,
    make_task,
    reverse_task,
    sort_task,
    task_env,
)


def test_the_episode_writes_the_completion_and_scores_it_once_at_the_end():
    task = reverse_task(vocab_size=5, prompt_length=3)
    env = jaxpg.make_env(task_env(task))
    assert env.obs_shape == (7,) and env.action_dim == 5 and env.obs_dtype == jnp.int32
    obs, state = env.reset(jax.random.key(0), 2)
    prompt = np.asarray(obs[:, :3])
    np.testing.assert_array_equal(obs[:, 3:6], 5)  # padding where nothing is written yet
    np.testing.assert_array_equal(obs[:, 6], 3)  # the position of the next token
    chosen = np.array([[1, 2, 3], [4, 4, 0]])
    for t in range(3):
        out = env.step(jax.random.key(t + 1), state, jnp.asarray(chosen[:, t]))
        last = t == 2
        assert np.all(np.asarray(out.terminated) == last) and not np.any(out.truncated)
        buf = np.asarray(out.final_obs)
        np.testing.assert_array_equal(buf[:, :3], prompt)
        np.testing.assert_array_equal(buf[:, 3 : 4 + t], chosen[:, : t + 1])
        np.testing.assert_array_equal(buf[:, 4 + t : 6], 5)
        if not last:
            np.testing.assert_array_equal(out.reward, 0.0)
            np.testing.assert_array_equal(buf[:, 6], 4 + t)
        state = out.env_state
    # The reward at the last token: the fraction of positions equal to the reversed prompt.
    want = (chosen == prompt[:, ::-1]).mean(axis=1)
    np.testing.assert_allclose(out.reward, want)
    # After the end the env starts a new prompt (gymnax's auto-reset).
    np.testing.assert_array_equal(np.asarray(out.obs)[:, 3:6], 5)


def test_built_in_rewards_and_success_by_hand():
    p = jnp.array([3, 0, 2, 2])
    copy, rev, srt = copy_task(4, 4), reverse_task(4, 4), sort_task(4, 4)
    assert float(copy.reward(p, jnp.array([3, 0, 1, 1]))) == 0.5
    assert not copy.success(p, jnp.array([3, 0, 2, 1]))
    assert bool(copy.success(p, p)) and float(copy.reward(p, p)) == 1.0
    assert float(rev.reward(p, jnp.array([2, 2, 0, 0]))) == 0.75  # reversed: 2 2 0 3
    assert bool(rev.success(p, jnp.array([2, 2, 0, 3])))
    assert float(srt.reward(p, jnp.array([0, 2, 3, 3]))) == 0.75  # sorted: 0 2 2 3
    assert bool(srt.success(p, jnp.array([0, 2, 2, 3])))
    add = add_task(digits=2)
    prompt = jnp.array([4, 7, 10, 5, 8])  # 47 + 58 = 105
    assert add.vocab_size == 11 and add.prompt_length == 5 and add.completion_length == 3
    assert bool(add.success(prompt, jnp.array([1, 0, 5])))
    assert float(add.reward(prompt, jnp.array([1, 0, 4]))) == pytest.approx(2 / 3)
    prompt = jnp.array([0, 3, 10, 0, 4])  # 03 + 04 = 007
    assert bool(add.success(prompt, jnp.array([0, 0, 7])))
    sample = add.sample_prompt(jax.random.key(0))
    assert int(sample[2]) == 10 and np.all(np.asarray(sample)[[0, 1, 3, 4]] < 10)


POSITIONS = pytest.mark.parametrize("positions", ["learned", "rotary"])


def test_rotary_against_complex_rotation_and_its_relative_scores():
    # Reference: each pair (x_i, x_{i + d/2}) as the complex number x_i + i x_{i + d/2},
    # multiplied by exp(i m theta_i), theta_i = 10000^(-2i/d).
    x = np.asarray(jax.random.normal(jax.random.key(0), (5, 3, 8)), np.float64)  # [L, H, d]
    m = np.array([0, 1, 4, 9, 30])
    theta = 10_000.0 ** (-np.arange(4) / 4)
    z = (x[..., :4] + 1j * x[..., 4:]) * np.exp(1j * m[:, None, None] * theta)
    expected = np.concatenate([z.real, z.imag], axis=-1)
    np.testing.assert_allclose(rotary(jnp.asarray(x, jnp.float32), jnp.asarray(m)), expected,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(np.linalg.norm(expected, axis=-1), np.linalg.norm(x, axis=-1))
    # A score <rotary(q, a), rotary(k, b)> depends on a - b only.
    q, k = jnp.asarray(x[0, 0], jnp.float32), jnp.asarray(x[1, 1], jnp.float32)
    turn = lambda v, at: rotary(v[None, None], jnp.array([at]))[0, 0]  # [d] at one position
    score = lambda a, b: float(turn(q, a) @ turn(k, b))
    np.testing.assert_allclose(score(7, 3), score(20, 16), rtol=1e-4)
    assert abs(score(7, 3) - score(7, 4)) > 1e-3


@POSITIONS
def test_the_transformer_is_causal(positions):
    module = CausalTransformer(
        vocab_size=5, action_dim=5, embed_dim=16, num_layers=2, num_heads=2, positions=positions
    )
    params = module.init(jax.random.key(0), jnp.zeros((1, 9), jnp.int32))
    if positions == "rotary":
        assert "pos_embed" not in params["params"]["encoder"]
    tokens = jax.random.randint(jax.random.key(1), (3, 8), 0, 6)
    encoder = CausalEncoder(
        vocab_size=5, embed_dim=16, num_layers=2, num_heads=2, positions=positions
    )
    encode = lambda t: encoder.apply({"params": params["params"]["encoder"]}, t)[0]
    base = encode(tokens)
    for t in range(7):
        later = tokens.at[:, t + 1 :].set((tokens[:, t + 1 :] + 1) % 6)  # change every later token
        out = encode(later)
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)
        assert not np.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-4)
    # The heads read the position before the next token: padding after it changes nothing.
    obs = jnp.concatenate([tokens, jnp.full((3, 1), 4)], axis=1)  # next token at position 4
    padded = obs.at[:, 4:8].set(5)
    np.testing.assert_allclose(
        module.apply(params, obs)[0], module.apply(params, padded)[0], atol=1e-6
    )


def twelve_token_transformer(positions, num_layers, num_heads):
    """A transformer over a 12-token buffer (vocabulary 6), its parameters, 3 random buffers."""
    module = CausalTransformer(
        vocab_size=6, action_dim=6, embed_dim=16, num_layers=num_layers, num_heads=num_heads,
        positions=positions,
    )  # fmt: skip
    params = module.init(jax.random.key(0), jnp.zeros((1, 13), jnp.int32))
    return module, params, jax.random.randint(jax.random.key(1), (3, 12), 0, 6)


@POSITIONS
def test_cached_decoding_equals_the_whole_buffer_pass_position_by_position(positions):
    module, params, tokens = twelve_token_transformer(positions, num_layers=2, num_heads=4)
    buffer = lambda p: jnp.concatenate(  # the first p tokens written, the rest empty (6)
        [jnp.where(jnp.arange(12) < p, tokens, 6), jnp.full((3, 1), p)], axis=1
    )
    whole = jax.jit(lambda p: module.apply(params, buffer(p)))
    decode = jax.jit(lambda p, cache: module.apply(params, buffer(p), cache))
    logits, value, cache = whole(3)  # the prompt: one pass
    for p in range(4, 13):  # then one token at a time against the cache
        logits, value, cache = decode(p, cache)
        whole_logits, whole_value, _ = whole(p)
        np.testing.assert_allclose(logits, whole_logits, atol=1e-5)
        np.testing.assert_allclose(value, whole_value, atol=1e-5)
        assert not np.allclose(logits[0], logits[1], atol=1e-3)  # the sequences differ
    # A stale cache gives other numbers: the cache is what decoding reads.
    stale = jax.tree.map(jnp.zeros_like, cache)
    assert not np.allclose(decode(12, stale)[0], whole_logits, atol=1e-3)


@POSITIONS
def test_the_order_of_the_tokens_reaches_the_output(positions):
    # One block: without positions its last output would read the earlier tokens as a bag (the
    # same logits in any order); the position embedding, or the rotation, makes order count.
    module, params, tokens = twelve_token_transformer(positions, num_layers=1, num_heads=2)
    reordered = tokens.at[:, :11].set(jnp.roll(tokens[:, :11], 1, axis=1))
    assert not np.array_equal(reordered, tokens)
    buffer = lambda t: jnp.concatenate([t, jnp.full((3, 1), 12)], axis=1)
    logits, _, _ = module.apply(params, buffer(tokens))
    assert not np.allclose(module.apply(params, buffer(reordered))[0], logits, atol=1e-4)


@pytest.mark.parametrize(
    ("env", "env_kwargs", "num_steps", "positions"),
    [
        ("seq:echo", {"prompt_length": 4}, 16, "learned"),
        ("seq:reverse", {"prompt_length": 4}, 4, "learned"),
        ("seq:echo", {"prompt_length": 4}, 16, "rotary"),
    ],
)
def test_the_transformers_rollout_and_replay_equal_the_whole_buffer_pass(
    env, env_kwargs, num_steps, positions
):
    # echo: episodes of 1..5 tokens end at different steps (resets inside the window, so the
    # replay scans the cached step); reverse: one whole episode per window (one causal pass).
    config = jaxpg.PPOConfig(
        env=env, env_kwargs=env_kwargs, network="transformer", embed_dim=16, num_heads=2,
        num_envs=8, num_steps=num_steps, num_minibatches=1, positions=positions,
    )  # fmt: skip
    agent = make_agent(config)
    params = agent.init(jax.random.key(0))
    carry = env_carry_init(
        jax.random.key(1), config.env_spec, 8, agent_carry=agent.initial_carry(8)
    )
    options = RolloutOptions(False, False, False)
    go = lambda key, carry: rollout(
        key, params, carry, jnp.float32(0.99), env=config.env_spec, agent=agent,
        dist=action_dist(True), num_steps=num_steps, options=options,
    )  # fmt: skip
    carry, _ = jax.jit(go)(jax.random.key(2), carry)  # the second window starts mid-episode
    start = carry.agent_carry
    carry, batch = jax.jit(go)(jax.random.key(3), carry)
    if env == "seq:echo":
        some = batch.reset[1:]  # a step where some sequences start and others go on
        assert bool(jnp.any(some.any(1) & ~some.all(1)))
    else:
        assert not bool(jnp.any(batch.reset[1:]))
    module = CausalTransformer(
        vocab_size=5, action_dim=5, embed_dim=16, num_heads=2, positions=positions
    )
    logits, value, _ = module.apply(params, batch.obs)  # every step's buffer, whole
    log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), batch.action[..., None], -1)[..., 0]
    np.testing.assert_allclose(batch.log_prob, log_prob, atol=1e-5)
    np.testing.assert_allclose(batch.value, value, atol=1e-5)
    # A truncation bootstraps from V(final observation), read through the cache too.
    np.testing.assert_allclose(
        batch.next_value, module.apply(params, batch.final_obs)[1], atol=1e-5
    )
    for replay in (
        lambda: unroll(agent, params, start, batch.obs, batch.reset),
        lambda: scan_apply(agent.apply, params, start, batch.obs, batch.reset),
    ):
        _, replay_logits, replay_value = jax.jit(replay)()
        np.testing.assert_allclose(replay_logits, logits, atol=1e-5)
        np.testing.assert_allclose(replay_value, value, atol=1e-5)


def test_a_users_task_in_ten_lines_trains_through_the_public_api():
    # Say the prompt's largest token twice.
    task = SequenceTask(
        vocab_size=4,
        prompt_length=3,
        completion_length=2,
        sample_prompt=lambda key: jax.random.randint(key, (3,), 0, 4),
        reward=lambda prompt, out: jnp.mean((out == prompt.max()).astype(jnp.float32)),
        success=lambda prompt, out: jnp.all(out == prompt.max()),
        name="max-twice",
    )
    config = jaxpg.PPOConfig(
        env=task_env(task),
        network="transformer",
        embed_dim=32,
        mode="trajectory",
        num_steps=None,
        num_envs=64,
        num_minibatches=2,
        lr=1e-3,
        total_timesteps=64 * 2 * 40,
    )
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    before = evaluate_task(
        config,
        jaxpg.train.policy_params(config, jaxpg.init_state(config, jax.random.key(0))),
        jax.random.key(1),
        256,
    )
    after = evaluate_task(config, result.params, jax.random.key(1), 256)
    assert float(before["exact_match"]) < 0.3 and float(after["exact_match"]) >= 0.8


@pytest.mark.parametrize("algo", ["reinforce", "grpo", "ppo_gae"])
def test_sequence_tasks_train_with_the_mlp_and_the_other_algorithms(algo):
    kw = dict(env="seq:sort", env_kwargs={"vocab_size": 3, "prompt_length": 3})
    if algo == "grpo":  # with the KL penalty towards the initial policy
        config = jaxpg.GRPOConfig(
            **kw,
            num_groups=2,
            group_size=4,
            num_minibatches=1,
            kl_coef=0.1,
            total_timesteps=8 * 3 * 2,
        )
    elif algo == "ppo_gae":  # per-token GAE with gamma = lambda = 1: every token gets R - V(s_t)
        config = jaxpg.PPOConfig(
            **kw,
            gamma=1.0,
            gae_lambda=1.0,
            num_envs=4,
            num_steps=3,
            num_minibatches=1,
            total_timesteps=4 * 3 * 2,
        )
    else:
        config = jaxpg.ReinforceConfig(
            **kw,
            mode="trajectory",
            num_steps=None,
            num_envs=4,
            baseline="moving_average",
            total_timesteps=4 * 3 * 2,
        )
    result = jax.jit(jaxpg.make_train(config))(jax.random.key(0))
    assert not np.any(np.asarray(result.metrics["nonfinite"]))
    assert make_agent(config)  # the default MLP reads the buffer as numbers


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sample_prompt=lambda k: jnp.zeros((4,), jnp.int32)), r"int32\[prompt_length=3\]"),
        (dict(sample_prompt=lambda k: jnp.zeros((3,), jnp.float32)), "int32.*float32"),
        (dict(reward=lambda p, c: jnp.zeros((2,))), "reward: must return a float32 scalar"),
        (dict(reward=lambda p, c: jnp.int32(1)), "reward: must return a float32 scalar"),
        (dict(success=lambda p, c: jnp.float32(1)), "success: must return a bool scalar"),
        (dict(vocab_size=1), "vocab_size=1 is invalid"),
        (dict(prompt_length=0), "prompt_length=0 is invalid"),
        (dict(completion_length=0), "completion_length=0 is invalid"),
        (dict(reward=lambda p: 0.0), "reward: calling it on dummy inputs failed"),
    ],
)
def test_bad_tasks_are_refused_when_built(kwargs, match):
    base = dict(
        vocab_size=4,
        prompt_length=3,
        completion_length=2,
        sample_prompt=lambda key: jax.random.randint(key, (3,), 0, 4),
        reward=lambda p, c: jnp.float32(0.0),
    )
    with pytest.raises(ValueError, match=match):
        SequenceTask(**{**base, **kwargs})


def test_names_sizes_and_bad_configs():
    assert make_task("seq:reverse", prompt_length=7).prompt_length == 7
    with pytest.raises(ValueError, match="unknown sequence task 'seq:shuffle'"):
        make_task("seq:shuffle")
    with pytest.raises(ValueError, match="env_kwargs for seq:copy"):
        make_task("copy", length=3)
    with pytest.raises(ValueError, match="network='transformer'.*sequence task"):
        jaxpg.PPOConfig(env="CartPole-v1", network="transformer")
    with pytest.raises(ValueError, match="num_heads=3"):
        jaxpg.PPOConfig(env="seq:copy", network="transformer", num_heads=3)
    with pytest.raises(ValueError, match='positions=\'alibi\'.*"learned" or "rotary"'):
        jaxpg.PPOConfig(env="seq:copy", network="transformer", positions="alibi")
    with pytest.raises(ValueError, match="positions='rotary'.*even head width.*= 5"):
        jaxpg.PPOConfig(
            env="seq:copy", network="transformer", embed_dim=10, num_heads=2, positions="rotary"
        )
    config = jaxpg.PPOConfig(
        env="seq:add",
        env_kwargs={"digits": 3},
        network="transformer",
        mode="trajectory",
        num_steps=None,
        num_envs=4,
        num_minibatches=1,
        total_timesteps=16,
    )
    assert config.env_spec.obs_shape == (7 + 4 + 1,) and config.num_steps == 4


def test_train_a_sequence_task_from_the_command_line(tmp_path):
    from jaxpg import cli, runs

    run_dir = tmp_path / "seq"
    code = cli.main(
        [
            "train",
            "ppo",
            "--env",
            "seq:reverse",
            "--env-kwargs",
            '{"prompt_length": 3, "vocab_size": 3}',
            "--network",
            "transformer",
            "--embed-dim",
            "16",
            "--mode",
            "trajectory",
            "--num-steps",
            "none",
            "--num-envs",
            "8",
            "--num-minibatches",
            "2",
            "--total-timesteps",
            "48",
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--no-plot",
        ]
    )
    assert code == 0
    config, _ = runs.read_config(run_dir)
    assert config.env_spec.name == "seq:reverse" and config.env_spec.obs_shape == (7,)
    assert cli.main(["eval", str(run_dir), "--episodes", "4"]) == 0


def test_one_reward_per_episode_needs_whole_episodes_in_a_rollout():
    # A 4-step rollout of 5-token completions would never see the reward: refused, not trained.
    for cls, kw in ((jaxpg.ReinforceConfig, {}), (jaxpg.PPOConfig, dict(num_minibatches=1))):
        with pytest.raises(ValueError, match="num_steps=4 is invalid: at least the episode limit"):
            cls(env="seq:reverse", mode="trajectory", num_steps=4, num_envs=4, **kw)
    with pytest.raises(ValueError, match="num_steps=4 is invalid"):
        jaxpg.ReinforceConfig(
            env="seq:copy",
            env_kwargs={"prompt_length": 4},
            mode="trajectory",
            num_steps=None,
            num_envs=4,
        ).replace(env_kwargs={})


def test_a_stop_token_ends_the_completion_and_the_length_limit_truncates_it():
    """seq:echo: the policy's stop token terminates the episode; an episode that reaches the
    length limit without it is truncated; the reward (partial credit over the prompt's symbols
    and the stop) is checked by hand in each case."""
    task = echo_task(vocab_size=5, prompt_length=4)
    assert (task.stop_token, task.completion_length) == (0, 5)
    env = jaxpg.make_env(task_env(task))
    obs, state = env.reset(jax.random.key(3), 3)
    prompt = np.asarray(obs[:, :4])
    n = (prompt != 0).sum(axis=1)
    for i in range(3):  # n symbols, then 0s
        assert n[i] >= 1 and np.all(prompt[i, : n[i]] != 0) and np.all(prompt[i, n[i] :] == 0)
    # Member 0 echoes its prompt and stops; member 1 stops at once; member 2 never stops.
    plans = [
        list(prompt[0, : n[0]]) + [0],
        [0],
        [1, 1, 1, 1, 1],
    ]
    ended = [None, None, None]
    for t in range(5):
        action = jnp.asarray([p[t] if t < len(p) else 1 for p in plans], jnp.int32)
        out = env.step(jax.random.key(10 + t), state, action)
        for i in range(len(plans)):
            if ended[i] is None and (bool(out.terminated[i]) or bool(out.truncated[i])):
                ended[i] = (t, bool(out.terminated[i]), bool(out.truncated[i]), float(out.reward[i]), np.asarray(out.final_obs[i]))  # fmt: skip
            elif ended[i] is None:
                assert out.reward[i] == 0.0
        state = out.env_state

    def by_hand(i, written):
        want = list(prompt[i, : n[i]]) + [0]
        got = written + [5] * (len(want) - len(written))
        return sum(int(a == b) for a, b in zip(got, want)) / len(want)

    t, term, trunc, reward, buf = ended[0]
    assert (t, term, trunc) == (n[0], True, False) and reward == 1.0
    np.testing.assert_array_equal(buf[4 : 5 + n[0]], plans[0])
    assert bool(task.success(jnp.asarray(buf[:4]), jnp.asarray(buf[4:9])))
    t, term, trunc, reward, buf = ended[1]
    assert (t, term, trunc) == (0, True, False) and reward == by_hand(1, [0])
    np.testing.assert_array_equal(buf[5:9], 5)  # nothing written after the stop
    t, term, trunc, reward, buf = ended[2]
    assert (t, term, trunc) == (4, False, True)
    assert reward == pytest.approx(by_hand(2, [1, 1, 1, 1, 1][: n[2] + 1]))


def test_a_stop_token_must_be_in_the_vocabulary():
    with pytest.raises(ValueError, match="stop_token=5"):
        jaxpg.sequence.SequenceTask(5, 2, 2, lambda k: jnp.zeros(2, jnp.int32), lambda p, c: jnp.float32(0), stop_token=5)  # fmt: skip
    with pytest.raises(ValueError, match="vocab_size=2"):
        echo_task(vocab_size=2)
