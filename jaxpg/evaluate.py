"""Evaluation of a trained policy on fresh episodes, vmapped; and GIF rendering.

:func:`evaluate` resets ``num_episodes`` environments and steps them together with the policy
(``jax.lax.while_loop`` until every one has finished its first episode, at most the
environment's own time limit ``max_steps_in_episode``). Only each environment's first episode
counts, so a short episode does not get re-sampled and bias the mean. The returns are raw,
undiscounted rewards.

:func:`render_gif` records one episode and animates it with gymnax's ``Visualizer`` (matplotlib,
written with Pillow, which matplotlib already depends on). gymnax draws only the environments in
:data:`RENDERABLE_ENVS`; for the others it raises :class:`RenderError`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpg import runs, sequence
from jaxpg.agents import AgentLike
from jaxpg.checkpoint import restore_checkpoint
from jaxpg.config import Config
from jaxpg.members import Members
from jaxpg.policy import PolicyParams, make_policy
from jaxpg.train import policy_params

# The environments gymnax's Visualizer can draw (gymnax/visualize/visualizer.py).
RENDERABLE_ENVS = (
    "Acrobot-v1",
    "CartPole-v1",
    "Pendulum-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "Catch-bsuite",
    "Asterix-MinAtar",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
    "Pong-misc",
    "PointRobot-misc",
    "MetaMaze-misc",
    "FourRooms-misc",
)


# gymnax draws these through gymnasium's classic-control renderer, which needs pygame.
_NEEDS_PYGAME = (
    "Acrobot-v1",
    "CartPole-v1",
    "Pendulum-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
)


class RenderError(ValueError):
    """The environment cannot be rendered by gymnax's visualizer (or a renderer is missing)."""


def render_problem(env_name: str) -> str | None:
    """Why ``env_name`` cannot be rendered here, or ``None`` if it can."""
    import importlib.util

    if env_name not in RENDERABLE_ENVS:
        return f"gymnax has no visualizer for {env_name}; it can render " + ", ".join(
            RENDERABLE_ENVS
        )
    if env_name in _NEEDS_PYGAME and importlib.util.find_spec("pygame") is None:
        return (
            f"rendering {env_name} needs pygame (gymnasium's classic-control renderer): "
            "pip install 'jaxpg[render]'"
        )
    return None


class EvalResult(NamedTuple):
    episode_return: jax.Array  # [num_episodes] raw undiscounted return of each first episode
    episode_length: jax.Array  # [num_episodes] int32
    finished: jax.Array  # [num_episodes] bool: the episode ended within max_steps


def _max_steps(config, max_steps: int | None) -> int:
    if max_steps is not None:
        if int(max_steps) < 1:
            raise ValueError(f"max_steps={max_steps!r} is invalid: a positive integer")
        return int(max_steps)
    steps = config.env_spec.max_steps_in_episode
    if steps is None:
        raise ValueError(
            f"max_steps: {config.env_spec.name}'s params have no max_steps_in_episode; "
            "give max_steps to bound the evaluation episodes"
        )
    return steps


def evaluate(
    config: Config,
    params: PolicyParams,
    key: jax.Array,
    num_episodes: int = 100,
    *,
    deterministic: bool = False,
    max_steps: int | None = None,
    agent: AgentLike | None = None,
) -> EvalResult:
    """Runs ``num_episodes`` fresh episodes of the policy ``params`` at once.

    Args:
      config: the config the policy was trained with (environment, network, normalisation).
      params: a :class:`PolicyParams` (``TrainResult.params`` or ``policy_params(config, state)``).
      key: PRNG key for the resets and, unless ``deterministic``, the actions.
      num_episodes: how many environments, each counted for its first episode only.
      deterministic: act with the distribution's mode instead of sampling.
      max_steps: step bound; default: the environment's ``max_steps_in_episode`` (its own time
        limit, after which gymnax truncates, so every episode finishes).
      agent: the policy of your own that was trained, given as an object (one the config names
        as ``network="module:attr"`` needs nothing here).

    Jittable (``num_episodes``, ``deterministic`` and ``max_steps`` are static) and vmappable over
    ``params`` (for many seeds). Called outside a trace it runs one compiled program, compiled
    once per ``(config, agent, num_episodes, deterministic, max_steps)``: a second call with new
    parameters or a new key compiles nothing. Returns an :class:`EvalResult`.
    """
    if not isinstance(num_episodes, (int, np.integer)) or num_episodes < 1:
        raise ValueError(f"num_episodes={num_episodes!r} is invalid: a positive integer")
    limit = _max_steps(config, max_steps)
    static = (config, agent, int(num_episodes), bool(deterministic), limit)
    try:
        compiled = _compiled_evaluate(*static)
    except TypeError:  # an agent object that cannot be hashed: evaluate without the cache
        policy = make_policy(config, agent)
        return _evaluate(config, policy, params, key, *static[2:])
    return compiled(params, key)


@functools.lru_cache(maxsize=16)
def _compiled_evaluate(config, agent, num_episodes, deterministic, limit):
    """``jax.jit`` of one evaluation, kept per static arguments: without it every eager call
    built new closures for its ``while_loop``, whose program jax compiled again each time
    (about 3 s a call for a Brax environment)."""
    policy = make_policy(config, agent)
    return jax.jit(
        lambda params, key: _evaluate(
            config, policy, params, key, num_episodes, deterministic, limit
        )
    )


class PlayState(NamedTuple):
    """The carry of a policy playing its environments: env states, observations ``[N, ...]``,
    the agent's carry and ``first`` ``[N]`` (true where the next step starts an episode)."""

    env_state: Any
    obs: jax.Array
    agent_carry: Any
    first: jax.Array


def play_start(env: Any, policy: Any, key: jax.Array, num_envs: int) -> PlayState:
    """``num_envs`` freshly reset environments and the policy's initial carry."""
    obs, env_state = env.reset(key, num_envs)
    first = jnp.ones((num_envs,), jnp.bool_)
    return PlayState(env_state, obs, policy.initial_carry(num_envs), first)


def play_step(
    env: Any,
    policy: Any,
    params: PolicyParams,
    state: PlayState,
    key: jax.Array,
    deterministic: bool,
) -> tuple[PlayState, Any]:
    """One step of ``policy`` in its environments: the action (sampled with the first half of
    ``key``, or the mode), then the environments' step (the second half). Returns the next
    :class:`PlayState` and the step's :class:`jaxpg.envs.StepResult`. Every evaluation loop
    (:func:`evaluate`, :func:`episode_states`, :func:`evaluate_task`) is this
    step in a ``scan`` or ``while_loop``."""
    act_key, env_key = jax.random.split(key)
    agent_carry, action = policy.step(
        params, state.agent_carry, state.obs, state.first, None if deterministic else act_key
    )
    out = env.step(env_key, state.env_state, action)
    return PlayState(out.env_state, out.obs, agent_carry, jnp.zeros_like(state.first)), out


def _evaluate(config, policy, params, key, num_episodes, deterministic, limit):
    env = config.env_spec
    reset_key, key = jax.random.split(key)
    zeros = jnp.zeros((num_episodes,), jnp.float32)
    done = jnp.zeros((num_episodes,), jnp.bool_)
    start = play_start(env, policy, reset_key, num_episodes)
    init = (start, zeros, jnp.zeros((num_episodes,), jnp.int32), done, key, jnp.int32(0))

    def cond(carry):
        *_, done, _, t = carry
        return jnp.logical_not(jnp.all(done)) & (t < limit)

    def body(carry):
        state, ret, length, done, key, t = carry
        key, step_key = jax.random.split(key)
        state, out = play_step(env, policy, params, state, step_key, deterministic)
        running = jnp.logical_not(done)  # only each environment's first episode counts
        ret = ret + jnp.where(running, out.reward, 0.0)
        length = length + running.astype(jnp.int32)
        done = done | out.terminated | out.truncated
        return state, ret, length, done, key, t + 1

    _, ret, length, done, _, _ = jax.lax.while_loop(cond, body, init)
    return EvalResult(ret, length, done)


def make_evaluate(
    config: Config,
    num_episodes: int = 100,
    *,
    deterministic: bool = False,
    max_steps: int | None = None,
    agent: AgentLike | None = None,
) -> Callable[[PolicyParams, jax.Array], EvalResult]:
    """``evaluate(params, key) -> EvalResult`` with the static arguments bound, ready to jit or
    vmap over params (many seeds); the arguments are :func:`evaluate`'s."""
    if not isinstance(num_episodes, (int, np.integer)) or num_episodes < 1:
        raise ValueError(f"num_episodes={num_episodes!r} is invalid: a positive integer")
    limit = _max_steps(config, max_steps)
    policy = make_policy(config, agent)

    def evaluate_fn(params: PolicyParams, key: jax.Array) -> EvalResult:
        return _evaluate(config, policy, params, key, int(num_episodes), bool(deterministic), limit)

    return evaluate_fn


def episode_states(
    config: Config,
    params: PolicyParams,
    key: jax.Array,
    *,
    deterministic: bool = False,
    max_steps: int | None = None,
    agent: AgentLike | None = None,
) -> tuple[list[Any], list[float]]:
    """One episode's environment states, for rendering: ``(states, rewards)`` as lists, the
    first state being the reset one, up to the end of the first episode."""
    env = config.env_spec
    limit = _max_steps(config, max_steps)
    policy = make_policy(config, agent)

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)

        def step(carry, step_key):
            state, done = carry
            next_state, out = play_step(env, policy, params, state, step_key, deterministic)
            done = done | out.terminated | out.truncated
            return (next_state, done), (state.env_state, out.reward, done)

        init = (play_start(env, policy, reset_key, 1), jnp.zeros((1,), jnp.bool_))
        _, (states, rewards, dones) = jax.lax.scan(step, init, jax.random.split(key, limit))
        return states, rewards[:, 0], dones[:, 0]

    states, rewards, dones = jax.device_get(run(key))
    dones = np.asarray(dones)
    # The frame before each step is kept; the episode ends at the first step flagged done.
    length = int(np.argmax(dones)) + 1 if dones.any() else len(dones)
    frames = [jax.tree.map(lambda x, t=t: x[t, 0], states) for t in range(length)]
    return frames, [float(r) for r in np.asarray(rewards)[:length]]


def render_gif(
    config: Config,
    params: PolicyParams,
    key: jax.Array,
    path: str,
    *,
    deterministic: bool = False,
    max_steps: int | None = None,
    agent: AgentLike | None = None,
) -> int:
    """Renders one episode of the policy to ``path`` (a .gif); returns the number of frames.

    Raises :class:`RenderError` if gymnax cannot draw this environment.
    """
    import os

    env = config.env_spec
    problem = render_problem(env.name)
    if problem:
        raise RenderError(problem)
    if not str(path).lower().endswith(".gif"):
        raise RenderError(f"render: {str(path)!r} is not a .gif file name")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # headless: no sound card, no display
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

    from jaxpg.files import atomic_path

    frames, rewards = episode_states(
        config, params, key, deterministic=deterministic, max_steps=max_steps, agent=agent
    )
    cumulative = np.cumsum(rewards)
    with atomic_path(path) as tmp:
        tmp_gif = tmp.with_suffix(".gif")  # the writers pick the format from the suffix
        try:
            if env.name in _NEEDS_PYGAME:
                _classic_control_gif(env, frames, cumulative, tmp_gif)
            else:
                from gymnax.visualize import Visualizer

                Visualizer(env.env, env.params, frames, cumulative).animate(str(tmp_gif))
            tmp_gif.replace(tmp)
        except Exception as e:  # noqa: BLE001 - the visualizer's backends fail in many ways
            raise RenderError(f"rendering {env.name} failed: {type(e).__name__}: {e}") from e
        finally:
            tmp_gif.unlink(missing_ok=True)
    return len(frames)


def _classic_control_gif(env, frames, cumulative, path, frame_ms: int = 40) -> None:
    """gymnax's classic-control drawing, with one gymnasium env for the whole episode.

    gymnax's Visualizer builds a new gymnasium env for every frame, which takes minutes for a
    500-step CartPole episode; this uses gymnax's own state conversion and one renderer.
    """
    import gymnasium as gym
    from gymnax.visualize import vis_gym
    from PIL import Image, ImageDraw

    gym_env = gym.make(env.name, render_mode="rgb_array")
    images = []
    try:
        gym_env.reset()
        raw = gym_env.unwrapped
        vis_gym.set_gym_params(raw, env.name, env.params)
        for t, state in enumerate(frames):
            raw.state = vis_gym.get_gym_state(state, env.name)
            if env.name == "Pendulum-v1":
                raw.last_u = np.asarray(state.last_u, dtype=np.float64)
            image = Image.fromarray(np.asarray(gym_env.render()))
            ImageDraw.Draw(image).text(
                (8, 8), f"{env.name}  step {t + 1}  return {cumulative[t]:.0f}", fill=(0, 0, 0)
            )
            images.append(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    finally:
        gym_env.close()
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0, optimize=True
    )


class RunEvaluation(NamedTuple):
    """What :func:`evaluate_run` returns: ``returns`` and ``finished`` are ``[M, episodes]``
    (one row per member of the run, :class:`jaxpg.members.Members` order); ``frames`` is the
    GIF's frame count (0 without ``render``)."""

    config: Any
    step: int
    members: Any
    returns: np.ndarray
    finished: np.ndarray
    frames: int


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    episodes: int = 100,
    deterministic: bool = False,
    seed: int = 0,
    step: int | None = None,
    max_steps: int | None = None,
    render: str | os.PathLike | None = None,
    agent: AgentLike | None = None,
) -> RunEvaluation:
    """Evaluates every member of a run directory's checkpoint (the latest, or ``step``) on
    ``episodes`` fresh episodes each (:func:`make_evaluate`, vmapped over the members), and
    optionally writes the first member's episode as a GIF (:func:`render_gif`).

    ``agent``: the policy, for a run whose policy was given to :func:`jaxpg.run` as an object
    without an import path (otherwise the run directory names it).

    Raises ``FileNotFoundError``/``ValueError`` for a directory that is not a run (or whose
    modules cannot be imported) or a bad argument, :class:`jaxpg.checkpoint.CheckpointError`
    for a missing or unreadable checkpoint, :class:`RenderError` when rendering fails.
    """
    config, run = runs.read_config(run_dir)
    if run.get("agent") == runs.UNRECORDED_AGENT and agent is None:
        raise ValueError(
            f"{run_dir}'s policy was {runs.UNRECORDED_AGENT}: pass it again (agent=...)"
        )
    if render is not None:
        problem = render_problem(config.env_spec.name)
        if problem:
            raise ValueError(f"render: {problem}")
    evaluate = make_evaluate(
        config, episodes, deterministic=deterministic, max_steps=max_steps, agent=agent
    )
    ckpt_dir = Path(run_dir) / runs.CHECKPOINT_DIR
    state, meta = restore_checkpoint(ckpt_dir, config, step=step, agent=agent)
    params = policy_params(config, state)
    batch_shape = tuple(meta.get("batch_shape", ()))
    key = jax.random.key(seed)
    if batch_shape:
        result = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))(params, key)
    else:
        result = jax.jit(evaluate)(params, key)
    members = Members.from_dict(meta if meta.get("seeds") else run)
    frames = 0
    if render is not None:
        first = jax.tree.map(lambda x: x.reshape(-1, *x.shape[len(batch_shape) :])[0], params)
        frames = render_gif(
            config,
            first,
            jax.random.fold_in(key, 1),
            render,
            deterministic=deterministic,
            max_steps=max_steps,
            agent=agent,
        )
    return RunEvaluation(
        config,
        int(meta["step"]),
        members,
        np.asarray(result.episode_return, np.float64).reshape(-1, episodes),
        np.asarray(result.finished).reshape(-1, episodes),
        frames,
    )


# -- sequence tasks ------------------------------------------------------------------------------


def evaluate_task(
    config: Config,
    params: PolicyParams,
    key: jax.Array,
    num_prompts: int = 256,
    *,
    deterministic: bool = False,
    agent: AgentLike | None = None,
) -> dict[str, jax.Array]:
    """Generates one completion for each of ``num_prompts`` fresh prompts with the policy
    ``params`` (sampled tokens, or the most likely with ``deterministic``); returns the mean
    ``reward`` and the ``exact_match`` rate (:func:`jaxpg.sequence.completion_stats`). Jittable and vmappable over
    ``params``."""
    env = config.env_spec
    task = getattr(env.env, "task", None)
    if task is None:
        raise ValueError(f"evaluate_task: {env.name} is not a sequence task")
    policy = make_policy(config, agent)
    reset_key, key = jax.random.split(key)

    def step(state, k):
        state, out = play_step(env, policy, params, state, k, deterministic)
        return state, out.final_obs

    init = play_start(env, policy, reset_key, num_prompts)
    _, finals = jax.lax.scan(step, init, jax.random.split(key, task.completion_length))
    return sequence.completion_stats(task, finals[-1])
