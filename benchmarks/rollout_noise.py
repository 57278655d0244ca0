"""Where the rollout should stop drawing all its action noise before the scan.

A rollout draws the Gumbel noise of a categorical policy for all ``T x N x A`` steps and actions
in one call before its scan (each ``jax.random`` call is a loop on a CPU, so one call beats ``T``
calls), or one ``[N, A]`` draw per step inside the scan. For large ``A`` (a token vocabulary) the
one call holds ``T * N * A`` floats at once. This script times both ways, and reads XLA's
temporary memory, for a growing number of actions, with a parameter-free uniform policy so
that the noise is all there is to measure besides the environment.

    python benchmarks/rollout_noise.py            # A = 2 .. 32768, N = 64, T = 128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import log, payload, publish  # noqa: E402
from timing import time_program  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_args(p, quick_help="two sizes, one repeat")
    p.add_argument("--num-actions", nargs="+", type=int, default=[2, 16, 128, 1024, 8192, 32768])
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--num-steps", type=int, default=128)
    return p.parse_args(argv)


def token_env(num_actions: int):
    """A gymnax env with ``num_actions`` actions and a one-token observation."""
    import jax.numpy as jnp
    from flax import struct
    from gymnax.environments import environment, spaces

    @struct.dataclass
    class State(environment.EnvState):
        time: int

    class Env(environment.Environment):
        @property
        def default_params(self):
            return environment.EnvParams(max_steps_in_episode=32)

        def step_env(self, key, state, action, params):
            new = State(time=state.time + 1)
            return jnp.asarray([action], jnp.int32), new, jnp.float32(0.0), jnp.bool_(False), {}

        def reset_env(self, key, params):
            return jnp.zeros((1,), jnp.int32), State(time=0)

        def observation_space(self, params):
            return spaces.Box(0, num_actions, (1,), jnp.int32)

        def action_space(self, params=None):
            return spaces.Discrete(num_actions)

    return Env()


def main(argv=None):
    args = parse_args(argv)
    import jax
    import jax.numpy as jnp

    import jaxpg
    from jaxpg import rollout as rollout_lib
    from jaxpg.agents import Agent
    from jaxpg.distributions import CATEGORICAL

    sizes = args.num_actions[:2] if args.quick else args.num_actions
    repeats = 1 if args.quick else (args.repeats or 3)
    T, N = args.num_steps, args.num_envs
    default = rollout_lib.PREDRAW_MAX_NOISE
    rows, results = [], []
    for A in sizes:
        env = jaxpg.make_env(token_env(A))
        agent = Agent(
            lambda k: None,
            lambda n: (),
            lambda p, c, obs, r: (c, jnp.zeros((obs.shape[0], A)), jnp.zeros(obs.shape[0])),
            True,
        )
        options = rollout_lib.RolloutOptions(False, False, True)
        row = {"num_actions": A, "noise_floats": T * N * A}
        for mode, limit in (("predraw", 2**62), ("per_step", 0)):
            rollout_lib.PREDRAW_MAX_NOISE = limit  # read at trace time

            def run(key, carry):
                _, batch = rollout_lib.rollout(
                    key,
                    None,
                    carry,
                    jnp.float32(0.99),
                    env=env,
                    agent=agent,
                    dist=CATEGORICAL,
                    num_steps=T,
                    options=options,
                )
                return jnp.sum(batch.action)

            carry = rollout_lib.env_carry_init(jax.random.key(0), env, N)
            rec = time_program(run, jax.random.key(1), carry, repeats=repeats)
            rec.pop("output")
            temp = (rec.get("memory") or {}).get("temp_size_in_bytes")
            row[f"{mode}_ms"] = 1e3 * rec["steady_s"]
            row[f"{mode}_temp_mib"] = None if temp is None else temp / 2**20
            results.append({"num_actions": A, "mode": mode, **rec})
            log(f"A={A} {mode}: {1e3 * rec['steady_s']:.2f} ms, temp {row[f'{mode}_temp_mib']} MiB")
        row["per_step_over_predraw"] = row["per_step_ms"] / row["predraw_ms"]
        rows.append(row)
    rollout_lib.PREDRAW_MAX_NOISE = default
    data = payload(
        "rollout_noise",
        "quick" if args.quick else "full",
        vars(args),
        results,
        machine_info(),
        predraw_max_noise=default,
    )
    columns = [
        ("num_actions", "actions A"),
        ("noise_floats", "T*N*A"),
        ("predraw_ms", "predraw ms"),
        ("per_step_ms", "per-step ms"),
        ("per_step_over_predraw", "per-step / predraw"),
        ("predraw_temp_mib", "predraw temp MiB"),
        ("per_step_temp_mib", "per-step temp MiB"),
    ]
    publish(args, "rollout_noise", data, rows, columns)


if __name__ == "__main__":
    main()
