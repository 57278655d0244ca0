"""Named configs whose learning results are tested in CI (tests/test_learning.py).

Each preset is a plain config; override any field with ``config.replace(...)``.
"""

from __future__ import annotations

from jaxpg.a2c import A2CConfig
from jaxpg.grpo import GRPOConfig
from jaxpg.ppo import PPOConfig
from jaxpg.reinforce import ReinforceConfig
from jaxpg.trpo import TRPOConfig


def ppo_cartpole() -> PPOConfig:
    """The PPO defaults (CleanRL/PureJaxRL CartPole settings): 4 envs x 128 steps, 500k steps."""
    return PPOConfig(env="CartPole-v1", total_timesteps=500_000)


def reinforce_cartpole() -> ReinforceConfig:
    """REINFORCE with a learned value baseline: 16 envs x 256 steps, lr 3e-3, 1M steps."""
    return ReinforceConfig(env="CartPole-v1", total_timesteps=1_000_000)


def ppo_pendulum() -> PPOConfig:
    """Continuous PPO on Pendulum-v1: 16 envs x 128 steps, 10 epochs of 8 minibatches,
    lr 1e-3, gamma 0.95, no entropy bonus, reward scaling; 1M steps."""
    return PPOConfig(
        env="Pendulum-v1",
        total_timesteps=1_000_000,
        num_envs=16,
        num_steps=128,
        num_epochs=10,
        num_minibatches=8,
        lr=1e-3,
        gamma=0.95,
        ent_coef=0.0,
        normalize_rewards=True,
    )


def reinforce_cartpole_trajectory() -> ReinforceConfig:
    """Single-trajectory-reward REINFORCE: whole episodes (500 steps), one reward R(tau) per
    episode, a moving-average baseline; 16 envs, lr 3e-3, 500k steps."""
    return ReinforceConfig(
        env="CartPole-v1",
        mode="trajectory",
        num_steps=None,
        baseline="moving_average",
        total_timesteps=500_000,
    )


def a2c_cartpole() -> A2CConfig:
    """The A2C defaults: 16 envs x 32 steps, one step per batch, lr 1e-3 annealed, reward
    scaling; 1M steps."""
    return A2CConfig(env="CartPole-v1")


def trpo_cartpole() -> TRPOConfig:
    """The TRPO defaults (Stable-Baselines3-contrib's trust region: target_kl 0.01, 15 CG
    iterations, damping 0.1, shrink 0.8 x 10; critic Adam lr 1e-3, 10 epochs x 4 minibatches;
    GAE lambda 0.98): 8 envs x 128 steps, 200k steps."""
    return TRPOConfig(env="CartPole-v1", total_timesteps=200_000)


def trpo_pendulum() -> TRPOConfig:
    """Continuous TRPO on Pendulum-v1: 16 envs x 128 steps, target_kl 0.01 (the default; at 0.02
    one seed of two on an Intel Xeon ended at -295), gamma 0.95, GAE lambda 0.95, 20 critic
    epochs, observation normalisation and reward scaling; 1M steps."""
    return TRPOConfig(
        env="Pendulum-v1",
        total_timesteps=1_000_000,
        num_envs=16,
        num_steps=128,
        gamma=0.95,
        gae_lambda=0.95,
        critic_epochs=20,
        normalize_obs=True,
        normalize_rewards=True,
    )


def ppo_cartpole_trajectory() -> PPOConfig:
    """PPO with one reward per trajectory: whole 500-step episodes from a fresh reset, R(tau) -
    V(s_0) on every step, the clipped surrogate; 16 envs, lr 1e-3, 1M steps."""
    return PPOConfig(
        env="CartPole-v1",
        mode="trajectory",
        num_steps=None,
        num_envs=16,
        lr=1e-3,
        total_timesteps=1_000_000,
    )


def grpo_cartpole() -> GRPOConfig:
    """GRPO with no critic: 4 groups of 8 tries from one shared start, whole episodes, the
    "std" group advantage, 8 epochs x 4 minibatches, lr 3e-3; 1M steps (62 updates). With
    GRPO's default 4 epochs, 4 of 16 seeds were still climbing at 1M (160-273) on a 2-core
    AMD EPYC; with 8 all 16 end at 498-500 (at 800k: 497-500)."""
    return GRPOConfig(env="CartPole-v1", num_epochs=8, total_timesteps=1_000_000)


def ppo_cartpole_positions_gru() -> PPOConfig:
    """Recurrent PPO on CartPole-v1 without velocities (``keep_obs=(0, 2)``: cart position and
    pole angle), a GRU of 64 units after a 64-unit encoder: 32 envs x 128 steps, 8 epochs x 4
    minibatches of 8 whole sequences, lr 3e-3 annealed, gamma 0.98, no entropy bonus; 500k
    steps. 15 seeds (``split(key(0), 3)``, ``split(key(0), 4)``, ``split(key(1), 8)``, 2-core
    AMD EPYC) each end at 500.0 and first reach 475 at 90k-274k. At lr 1e-3 it needed 1M (at 600k
    the lowest of 16 seeds ended at 477.8); at 400k and lr 3e-3 one seed of 11 ended at 474; with
    PPO's default 4 epochs the seeds reach 500 only near 800k at lr 1e-3, and at lr 3e-3 one of
    4 ended at 483 at 500k."""
    return PPOConfig(
        env="CartPole-v1",
        keep_obs=(0, 2),
        network="gru",
        recurrent_size=64,
        hidden_sizes=(64,),
        num_envs=32,
        num_steps=128,
        num_epochs=8,
        num_minibatches=4,
        lr=3e-3,
        gamma=0.98,
        ent_coef=0.0,
        total_timesteps=500_000,
    )


def ppo_memorychain_gru() -> PPOConfig:
    """Recurrent PPO on MemoryChain-bsuite (memory length 5: the context seen at the first step
    decides the reward, +1 or -1, at the last): a GRU of 64 units, 32 envs x 64 steps, lr 1e-3,
    no entropy bonus; 200k steps."""
    return PPOConfig(
        env="MemoryChain-bsuite",
        network="gru",
        recurrent_size=64,
        hidden_sizes=(64,),
        num_envs=32,
        num_steps=64,
        num_minibatches=4,
        lr=1e-3,
        ent_coef=0.0,
        total_timesteps=200_000,
    )


def ppo_reverse_transformer() -> PPOConfig:
    """PPO on ``seq:reverse`` (5 tokens over a vocabulary of 5), the causal transformer, one
    reward per completion: the clipped ratio with ``A = R - V(prompt)`` (``mode="trajectory"``),
    64 completions per update, 4 epochs x 4 minibatches, lr 1e-3; 120 updates (38,400 tokens)."""
    return PPOConfig(
        env="seq:reverse",
        network="transformer",
        mode="trajectory",
        num_steps=None,
        num_envs=64,
        num_minibatches=4,
        lr=1e-3,
        total_timesteps=64 * 5 * 120,
    )


def grpo_reverse_transformer() -> GRPOConfig:
    """GRPO on ``seq:reverse`` (5 tokens, vocabulary 5), the causal transformer: 16 prompts x 8
    completions per update, the std group advantage, no critic, lr 1e-3; 50 updates (32,000
    tokens)."""
    return GRPOConfig(
        env="seq:reverse",
        network="transformer",
        num_groups=16,
        group_size=8,
        num_minibatches=4,
        lr=1e-3,
        total_timesteps=128 * 5 * 50,
    )


def grpo_copy16_transformer() -> GRPOConfig:
    """GRPO on ``seq:copy`` with 16-token prompts and completions over a vocabulary of 2 (a
    32-token buffer; exact match needs all 16 tokens right, sampled), a 1-block transformer of
    width 32 with rotary positions (every output token looks back 16 places: one offset) and
    the key/value cache: 16 prompts x 8 completions per update, lr 3e-3; 100 updates (204,800
    tokens). Exact match of 512 sampled completions after it, 18 seeds: 1.0, 1.0, 0.996, 1.0,
    1.0, 1.0 (``split(key(0), 6)``); 1.0, 0.0, 1.0, 1.0, 1.0, 0.998, 1.0, 1.0, 0.998, 0.045,
    1.0, 1.0 (``split(key(1), 12)``): 16 of 18 reach 0.99; in the other two a few positions
    settle on a wrong token with certainty early on (rewards 0.80-0.83), where a group's
    completions agree and its advantage is zero. With learned absolute positions instead, 6 of
    9 seeds learned it."""
    return GRPOConfig(
        env="seq:copy",
        env_kwargs={"vocab_size": 2, "prompt_length": 16},
        network="transformer",
        embed_dim=32,
        num_layers=1,
        num_heads=2,
        positions="rotary",
        num_groups=16,
        group_size=8,
        num_minibatches=2,
        lr=3e-3,
        total_timesteps=128 * 16 * 100,
    )


def reinforce_copy_transformer() -> ReinforceConfig:
    """REINFORCE on ``seq:copy`` (4 tokens, vocabulary 4), the causal transformer: ``-log pi *
    (R - b)`` with one reward per completion and a moving-average baseline, 128 completions per
    update, lr 1e-3; 250 updates (128,000 tokens)."""
    return ReinforceConfig(
        env="seq:copy",
        env_kwargs={"vocab_size": 4, "prompt_length": 4},
        network="transformer",
        mode="trajectory",
        num_steps=None,
        baseline="moving_average",
        num_envs=128,
        lr=1e-3,
        total_timesteps=128 * 4 * 250,
    )


MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "SpaceInvaders")


MINATAR_SETTINGS = ("gymnax-blines", "purejaxrl")


def ppo_minatar(game: str, network: str = "mlp", settings: str = "gymnax-blines") -> PPOConfig:
    """PPO on ``{game}-MinAtar`` at the published budget, 10M env steps, 64 envs x 128 steps,
    4 epochs x 8 minibatches, GAE 0.95, clip 0.2, entropy 0.01, separate ReLU actor and critic.

    ``settings="gymnax-blines"``: lr 5e-4 constant, gamma 0.999, ``network="mlp"`` the flattened
    grid into 2x256 (gymnax-blines' configs). ``"purejaxrl"``: lr 5e-3 annealed linearly to 0,
    gamma 0.99, ``"mlp"`` 2x64 (PureJaxRL's MinAtar config). ``network="cnn"`` (either settings):
    the MinAtar paper's torso, one 3x3 convolution of 16 channels then 128 ReLU units (Young &
    Tian, 2019). The environments are gymnax's: no sticky actions, gymnax's episode limits."""
    if game not in MINATAR_GAMES:
        raise ValueError(f"game={game!r} is invalid: one of {list(MINATAR_GAMES)}")
    if network not in ("mlp", "cnn"):
        raise ValueError(f"network={network!r} is invalid: one of ['mlp', 'cnn']")
    if settings not in MINATAR_SETTINGS:
        raise ValueError(f"settings={settings!r} is invalid: one of {list(MINATAR_SETTINGS)}")
    purejaxrl = settings == "purejaxrl"
    torso = (
        dict(hidden_sizes=(64, 64) if purejaxrl else (256, 256))
        if network == "mlp"
        else dict(network=network, conv_channels=(16,), hidden_sizes=(128,))
    )
    return PPOConfig(
        env=f"{game}-MinAtar",
        total_timesteps=10_000_000,
        num_envs=64,
        num_steps=128,
        num_epochs=4,
        num_minibatches=8,
        lr=5e-3 if purejaxrl else 5e-4,
        anneal_lr=purejaxrl,
        gamma=0.99 if purejaxrl else 0.999,
        gae_lambda=0.95,
        activation="relu",
        **torso,
    )


# Brax's published PPO settings for its locomotion tasks (the Brax training colab and
# brax/training/agents/ppo: num_envs, unroll_length, batch_size, num_minibatches,
# num_updates_per_batch, discounting, learning_rate, entropy_cost, reward_scaling, 50M steps).
# Hopper has no published PPO settings (Brax trains it with SAC): it takes halfcheetah's with
# gamma 0.97 and entropy 1e-2.
BRAX_PPO = {
    #              envs  unroll batch  minib epochs gamma  ent    reward scale
    "ant": dict(n=4096, unroll=5, batch=2048, mb=32, epochs=4, gamma=0.97, ent=1e-2, scale=10.0),
    "halfcheetah": dict(
        n=2048, unroll=20, batch=512, mb=32, epochs=8, gamma=0.95, ent=1e-3, scale=1.0
    ),
    "hopper": dict(n=2048, unroll=20, batch=512, mb=32, epochs=8, gamma=0.97, ent=1e-2, scale=1.0),
    "humanoid": dict(
        n=2048, unroll=10, batch=1024, mb=32, epochs=8, gamma=0.97, ent=1e-3, scale=0.1
    ),
}


def ppo_brax(task: str, backend: str = "positional") -> PPOConfig:
    """PPO on ``brax:{task}`` with the settings Brax publishes for its own PPO (:data:`BRAX_PPO`):
    50M env steps, lr 3e-4, GAE 0.95, clip 0.3, observation normalisation, Brax's reward
    scaling as a constant, episodes of 1000 steps (truncated, bootstrapped), ``backend`` as
    Brax's colab. Brax's training step collects ``batch_size * num_minibatches`` unrolls of
    ``unroll_length`` steps from ``num_envs`` environments, one after another; jaxpg collects
    the same steps per update as one rollout of ``num_steps = unroll_length * batch_size *
    num_minibatches / num_envs`` steps (its GAE runs over the whole rollout, not each unroll).
    The network is jaxpg's: actor and critic 2x256 swish (Brax: a 4x32 policy, a 5x256 value)."""
    if task not in BRAX_PPO:
        raise ValueError(f"task={task!r} is invalid: one of {list(BRAX_PPO)}")
    p = BRAX_PPO[task]
    return PPOConfig(
        env=f"brax:{task}",
        env_kwargs={"backend": backend, "episode_length": 1000},
        total_timesteps=50_000_000,
        num_envs=p["n"],
        num_steps=p["unroll"] * p["batch"] * p["mb"] // p["n"],
        num_minibatches=p["mb"],
        num_epochs=p["epochs"],
        lr=3e-4,
        anneal_lr=False,
        gamma=p["gamma"],
        gae_lambda=0.95,
        clip_eps=0.3,
        ent_coef=p["ent"],
        reward_scale=p["scale"],
        normalize_obs=True,
        hidden_sizes=(256, 256),
        activation="swish",
    )


def ppo_brax_inverted_pendulum() -> PPOConfig:
    """PPO on ``brax:inverted_pendulum`` (spring backend, the fastest on a CPU): 64 envs x 32
    steps, 4 epochs x 4 minibatches, lr 3e-3, gamma 0.995 with reward normalisation, episodes
    of 1000 steps; 600k steps. The CI learning test's Brax task.

    Balancing for the whole episode needs the cart kept off the rail's end, a consequence
    hundreds of steps away: with gamma 0.99 the deterministic policies of 8 seeds fell after
    111-792 steps; with gamma 0.995 and normalised rewards they balance 795-1000 (mean 917)."""
    return PPOConfig(
        env="brax:inverted_pendulum",
        env_kwargs={"backend": "spring", "episode_length": 1000},
        total_timesteps=600_000,
        num_envs=64,
        num_steps=32,
        num_epochs=4,
        num_minibatches=4,
        lr=3e-3,
        gamma=0.995,
        ent_coef=0.0,
        normalize_obs=True,
        normalize_rewards=True,
    )


PRESETS = {
    "ppo-cartpole-trajectory": ppo_cartpole_trajectory,
    "grpo-cartpole": grpo_cartpole,
    "trpo-cartpole": trpo_cartpole,
    "trpo-pendulum": trpo_pendulum,
    "a2c-cartpole": a2c_cartpole,
    "ppo-cartpole": ppo_cartpole,
    "reinforce-cartpole": reinforce_cartpole,
    "ppo-pendulum": ppo_pendulum,
    "reinforce-cartpole-trajectory": reinforce_cartpole_trajectory,
    "ppo-cartpole-positions-gru": ppo_cartpole_positions_gru,
    "ppo-memorychain-gru": ppo_memorychain_gru,
    "ppo-reverse-transformer": ppo_reverse_transformer,
    "grpo-reverse-transformer": grpo_reverse_transformer,
    "grpo-copy16-transformer": grpo_copy16_transformer,
    "reinforce-copy-transformer": reinforce_copy_transformer,
    **{
        f"ppo-{game.lower()}-minatar{tag}{suffix}": (
            lambda game=game, network=network, settings=settings: ppo_minatar(
                game, network, settings
            )
        )
        for game in MINATAR_GAMES
        for settings, tag in (("gymnax-blines", ""), ("purejaxrl", "-purejaxrl"))
        for network, suffix in (("mlp", ""), ("cnn", "-cnn"))
    },
    **{f"ppo-brax-{task}": (lambda task=task: ppo_brax(task)) for task in BRAX_PPO},
    "ppo-brax-inverted-pendulum": ppo_brax_inverted_pendulum,
}
