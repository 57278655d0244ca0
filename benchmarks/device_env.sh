# Sourced by the accelerator scripts (device_suite.sh, device_peers.sh, minatar_10m.sh), from
# the repository root: installs the wheels in .whl/ (if any) into /tmp/jaxpg-site, without
# dependencies and without the network, and puts that folder and this checkout on PYTHONPATH.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/jaxpg-site .whl/*.whl
  export PYTHONPATH="/tmp/jaxpg-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
