"""Sequence tasks with one reward at the end: language-model RL in miniature, as gymnax envs.

A :class:`SequenceTask` is a prompt distribution and a scoring function:

    sample_prompt(key) -> int32[prompt_length]            # tokens in [0, vocab_size)
    reward(prompt, completion) -> float32[]               # a pure function of the whole output
    success(prompt, completion) -> bool[]                 # optional: an exact-match test

:func:`task_env` makes it a gymnax ``Environment``, so every jaxpg feature works on it unchanged
(all algorithms, vmapped seeds, sweeps, the CLI, checkpoints, evaluation). One episode generates
one completion:

* the observation is ``int32[prompt_length + completion_length + 1]``: the token buffer (the
  prompt, then the completion so far, then :attr:`SequenceTask.pad` = ``vocab_size`` in the
  places not yet written), and last the position ``p`` where the next token goes (``p =
  prompt_length + t`` at step ``t``);
* the action is the next token, in ``[0, vocab_size)``;
* the reward is 0 until the last completion token and ``reward(prompt, completion)`` there,
  where the episode terminates: exactly ``completion_length`` actions per episode;
* with a ``stop_token``, completions have variable length: writing it terminates the episode
  (the places after it stay ``pad`` in the completion the reward sees), and an episode that
  reaches ``completion_length`` tokens without it is truncated, scored all the same (the
  truncated completions that ``GRPOConfig(mask_truncated_completions=True)`` leaves out).

Built-in tasks (:data:`TASKS`; ``Config(env="seq:reverse", env_kwargs={"prompt_length": 5})`` or
``jaxpg train ppo --env seq:reverse``): ``copy``, ``reverse`` and ``sort`` (reward: the fraction
of positions right; success: all right) and ``add`` (two numbers of ``digits`` decimal digits and a
``+``; the completion is their sum's ``digits + 1`` digits, most significant first; partial
credit for the digits right), and ``echo`` (variable-length: repeat a prompt of 1 to
``prompt_length`` symbols, then the stop token). Longer tasks are the same ones sized up:
``seq:reverse`` with ``prompt_length=16`` (16-token completions), ``seq:add`` with ``digits=16``
(a 33-token prompt, a 17-token completion).

The lecture's pseudo-code, one reward per generated output, maps onto the trainer as: REINFORCE
``ReinforceConfig(mode="trajectory", baseline="moving_average", num_steps=None)`` (``-log pi *
(R - b)``), PPO ``PPOConfig(mode="trajectory")`` (clipped ratio, ``A = R - V(prompt)``, or
``baseline="moving_average"`` for ``R - b``; or the default GAE mode with ``gamma=gae_lambda=1``),
and GRPO ``GRPOConfig(group_size=G)`` (the group's environments share one prompt).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment as gx_env
from gymnax.environments import spaces as gx_spaces

from jaxpg.envs import register_env_family


@dataclasses.dataclass(frozen=True)
class SequenceTask:
    """A prompt sampler and a reward on whole completions (see the module docstring).

    Checked when built, by tracing the functions on dummy inputs (nothing runs): the prompt must
    be an integer array of shape ``[prompt_length]``, the reward a float scalar, ``success`` a
    bool scalar; ``vocab_size >= 2`` and both lengths positive.
    """

    vocab_size: int
    prompt_length: int
    completion_length: int
    sample_prompt: Callable[[jax.Array], jax.Array]
    reward: Callable[[jax.Array, jax.Array], jax.Array]
    success: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    name: str = "SequenceTask"
    stop_token: int | None = None

    def __post_init__(self):
        for field, low in (("vocab_size", 2), ("prompt_length", 1), ("completion_length", 1)):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{field}={value!r} is invalid: an integer >= {low}")
        stop = self.stop_token
        if stop is not None and (
            not isinstance(stop, (int, np.integer))
            or isinstance(stop, bool)
            or not 0 <= stop < self.vocab_size  # fmt: skip
        ):
            raise ValueError(
                f"stop_token={stop!r} is invalid: None, or a token id in [0, {self.vocab_size})"
            )
        prompt = _trace(self.sample_prompt, "sample_prompt", jax.random.key(0))
        if prompt.shape != (self.prompt_length,) or not jnp.issubdtype(prompt.dtype, jnp.integer):
            raise ValueError(
                f"sample_prompt: must return int32[prompt_length={self.prompt_length}] tokens; "
                f"got {prompt.dtype}{list(prompt.shape)}"
            )
        args = (
            jax.ShapeDtypeStruct((self.prompt_length,), jnp.int32),
            jax.ShapeDtypeStruct((self.completion_length,), jnp.int32),
        )
        r = _trace(self.reward, "reward", *args)
        if r.shape != () or not jnp.issubdtype(r.dtype, jnp.floating):
            raise ValueError(f"reward: must return a float32 scalar; got {r.dtype}{list(r.shape)}")
        if self.success is not None:
            s = _trace(self.success, "success", *args)
            if s.shape != () or s.dtype != jnp.bool_:
                raise ValueError(
                    f"success: must return a bool scalar; got {s.dtype}{list(s.shape)}"
                )

    @property
    def pad(self) -> int:
        """The token id of a place not yet written (one past the vocabulary)."""
        return self.vocab_size

    @property
    def length(self) -> int:
        return self.prompt_length + self.completion_length


def _trace(fn, name, *args):
    if not callable(fn):
        raise ValueError(f"{name}: must be a function, got {type(fn).__name__}")
    try:
        return jax.eval_shape(fn, *args)
    except Exception as e:  # noqa: BLE001 - any failure to trace is the user's function's
        raise ValueError(f"{name}: calling it on dummy inputs failed: {e}") from e


# -- the environment ---------------------------------------------------------------------------


@struct.dataclass
class SequenceState(gx_env.EnvState):
    time: int  # completion tokens written so far
    tokens: jax.Array  # int32[prompt_length + completion_length], pad where not yet written


class SequenceEnv(gx_env.Environment):
    """:class:`SequenceTask` as a gymnax environment (built by :func:`task_env`)."""

    def __init__(self, task: SequenceTask):
        super().__init__()
        self.task = task

    @property
    def default_params(self) -> gx_env.EnvParams:
        # The time limit is the completion length: the episode terminates there.
        return gx_env.EnvParams(max_steps_in_episode=self.task.completion_length)

    def _obs(self, state):
        pos = self.task.prompt_length + state.time
        return jnp.concatenate([state.tokens, jnp.asarray(pos, jnp.int32)[None]])

    def reset_env(
        self, key: jax.Array, params: gx_env.EnvParams
    ) -> tuple[jax.Array, SequenceState]:
        task = self.task
        prompt = jnp.asarray(task.sample_prompt(key), jnp.int32)
        tokens = jnp.concatenate([prompt, jnp.full((task.completion_length,), task.pad, jnp.int32)])
        state = SequenceState(time=0, tokens=tokens)
        return self._obs(state), state

    def step_env(
        self,
        key: jax.Array,
        state: SequenceState,
        action: int | float | jax.Array,
        params: gx_env.EnvParams,
    ) -> tuple[jax.Array, SequenceState, jax.Array, jax.Array, dict[Any, Any]]:
        task = self.task
        pos = task.prompt_length + state.time
        token = jnp.asarray(action, jnp.int32)
        tokens = state.tokens.at[pos].set(token)
        time = state.time + 1
        new_state = SequenceState(time=time, tokens=tokens)
        if task.stop_token is None:
            terminated = time >= task.completion_length
        else:
            terminated = token == task.stop_token
        done = jnp.logical_or(terminated, self.is_truncated(new_state, params))
        prompt, completion = tokens[: task.prompt_length], tokens[task.prompt_length :]
        reward = jnp.where(done, jnp.asarray(task.reward(prompt, completion), jnp.float32), 0.0)
        return self._obs(new_state), new_state, reward, terminated, {}

    def is_truncated(self, state: SequenceState, params: gx_env.EnvParams) -> jax.Array:
        """Without a stop token every episode terminates after ``completion_length`` tokens;
        with one, an episode that reaches that length without writing it is cut there
        (truncated: TRL's truncated completion, scored all the same)."""
        if self.task.stop_token is None:
            return jnp.zeros((), jnp.bool_)
        last = state.tokens[self.task.prompt_length + jnp.maximum(state.time, 1) - 1]
        return (state.time >= self.task.completion_length) & (last != self.task.stop_token)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def num_actions(self) -> int:
        return self.task.vocab_size

    def action_space(self, params: gx_env.EnvParams | None = None) -> gx_spaces.Discrete:
        return gx_spaces.Discrete(self.task.vocab_size)

    def observation_space(self, params: gx_env.EnvParams) -> gx_spaces.Box:
        return gx_spaces.Box(
            0, max(self.task.vocab_size, self.task.length), (self.task.length + 1,), jnp.int32
        )


def task_env(task: SequenceTask) -> SequenceEnv:
    """The gymnax ``Environment`` of ``task`` (see the module docstring)."""
    if not isinstance(task, SequenceTask):
        raise ValueError(
            f"task_env: expected a jaxpg.sequence.SequenceTask, got {type(task).__name__}"
        )
    return SequenceEnv(task)


def split_obs(task: SequenceTask, obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``obs [..., L + 1]`` -> ``(prompt [..., P], completion [..., C], position [...])``."""
    return obs[..., : task.prompt_length], obs[..., task.prompt_length : task.length], obs[..., -1]


# -- built-in tasks ----------------------------------------------------------------------------


def _uniform_prompt(vocab_size, length):
    return lambda key: jax.random.randint(key, (length,), 0, vocab_size, jnp.int32)


def _positionwise(target_fn):
    def reward(prompt, completion):
        return jnp.mean((completion == target_fn(prompt)).astype(jnp.float32))

    def success(prompt, completion):
        return jnp.all(completion == target_fn(prompt))

    return reward, success


def copy_task(vocab_size: int = 5, prompt_length: int = 5) -> SequenceTask:
    """Repeat the prompt. Reward: the fraction of positions right."""
    reward, success = _positionwise(lambda p: p)
    return SequenceTask(
        vocab_size,
        prompt_length,
        prompt_length,
        _uniform_prompt(vocab_size, prompt_length),
        reward,
        success,
        "seq:copy",
    )


def reverse_task(vocab_size: int = 5, prompt_length: int = 5) -> SequenceTask:
    """Write the prompt backwards. Reward: the fraction of positions right."""
    reward, success = _positionwise(lambda p: p[::-1])
    return SequenceTask(
        vocab_size,
        prompt_length,
        prompt_length,
        _uniform_prompt(vocab_size, prompt_length),
        reward,
        success,
        "seq:reverse",
    )


def sort_task(vocab_size: int = 5, prompt_length: int = 5) -> SequenceTask:
    """Write the prompt's tokens in ascending order. Reward: the fraction of positions right."""
    reward, success = _positionwise(jnp.sort)
    return SequenceTask(
        vocab_size,
        prompt_length,
        prompt_length,
        _uniform_prompt(vocab_size, prompt_length),
        reward,
        success,
        "seq:sort",
    )


def echo_task(vocab_size: int = 5, prompt_length: int = 8) -> SequenceTask:
    """Variable-length completions: token 0 is the stop token, ``1..vocab_size-1`` symbols. The
    prompt is ``n`` symbols (``n`` uniform in ``1..prompt_length``) and then 0s; the completion
    is those ``n`` symbols and the stop token, which ends the episode (at most
    ``prompt_length + 1`` tokens; an episode that reaches that length without stopping is
    truncated). Reward: the fraction of the ``n + 1`` target tokens right, the stop included
    (partial credit); success: all of them."""
    if not isinstance(vocab_size, int) or vocab_size < 3:
        raise ValueError(f"vocab_size={vocab_size!r} is invalid: an integer >= 3 (0 is the stop token)")  # fmt: skip
    places = jnp.arange(prompt_length + 1)

    def sample_prompt(key):
        k_len, k_sym = jax.random.split(key)
        n = jax.random.randint(k_len, (), 1, prompt_length + 1)
        symbols = jax.random.randint(k_sym, (prompt_length,), 1, vocab_size, jnp.int32)
        return jnp.where(jnp.arange(prompt_length) < n, symbols, 0)

    def target(prompt):
        n = jnp.sum(prompt != 0)
        return jnp.concatenate([prompt, jnp.zeros((1,), jnp.int32)]), places <= n

    def reward(prompt, completion):
        want, counted = target(prompt)
        right = (completion == want) & counted
        return jnp.sum(right).astype(jnp.float32) / jnp.sum(counted)

    def success(prompt, completion):
        want, counted = target(prompt)
        return jnp.all((completion == want) | ~counted)

    return SequenceTask(
        vocab_size, prompt_length, prompt_length + 1, sample_prompt, reward, success, "seq:echo", 0
    )


def add_task(digits: int = 2) -> SequenceTask:
    """``a + b`` with ``digits`` decimal digits each (tokens 0-9, ``+`` = 10): the prompt is ``a``'s
    digits, ``+``, ``b``'s digits (most significant first); the completion is the sum's
    ``digits + 1`` digits. Reward: the fraction of digits right; success: all right."""
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits={digits!r} is invalid: a positive integer")
    powers = 10 ** jnp.arange(digits - 1, -1, -1)

    def sample_prompt(key):
        a, b = jax.random.randint(key, (2, digits), 0, 10, jnp.int32)
        return jnp.concatenate([a, jnp.array([10], jnp.int32), b])

    def target(prompt):
        a = jnp.sum(prompt[:digits] * powers)
        b = jnp.sum(prompt[digits + 1 :] * powers)
        total = a + b
        return (total // 10 ** jnp.arange(digits, -1, -1)) % 10

    def reward(prompt, completion):
        return jnp.mean((completion == target(prompt)).astype(jnp.float32))

    def success(prompt, completion):
        return jnp.all(completion == target(prompt))

    return SequenceTask(11, 2 * digits + 1, digits + 1, sample_prompt, reward, success, "seq:add")


TASKS: dict[str, Callable[..., SequenceTask]] = {
    "copy": copy_task,
    "reverse": reverse_task,
    "sort": sort_task,
    "add": add_task,
    "echo": echo_task,
}


def make_task(name: str, **kwargs: Any) -> SequenceTask:
    """A built-in task by name (``"reverse"`` or ``"seq:reverse"``), sized by ``kwargs``."""
    key = name[4:] if name.startswith("seq:") else name
    if key not in TASKS:
        raise ValueError(
            f"env: unknown sequence task {name!r}; built in: "
            + ", ".join(f"seq:{k}" for k in TASKS)
        )
    try:
        return TASKS[key](**kwargs)
    except TypeError as e:
        raise ValueError(f"env_kwargs for seq:{key}: {e}") from None


def completion_stats(task: SequenceTask, obs: jax.Array) -> dict[str, jax.Array]:
    """The mean reward and exact-match rate of finished buffers ``obs [..., L + 1]``."""
    prompt, completion, _ = split_obs(task, obs)
    reward = jax.vmap(task.reward)(
        prompt.reshape(-1, task.prompt_length), completion.reshape(-1, task.completion_length)
    )
    out = {"reward": jnp.mean(reward)}
    if task.success is not None:
        ok = jax.vmap(task.success)(
            prompt.reshape(-1, task.prompt_length), completion.reshape(-1, task.completion_length)
        )
        out["exact_match"] = jnp.mean(ok.astype(jnp.float32))
    return out


def _make_env(name: str, **kwargs: Any) -> SequenceEnv:
    return task_env(make_task(name, **kwargs))


register_env_family("seq", _make_env, lambda: [f"seq:{name}" for name in TASKS])
