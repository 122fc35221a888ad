#!/bin/sh
# provision's entrypoint for GPU recipes (images/*/recipe.yml with gpu_entrypoint: true): says
# whether this container sees NVIDIA GPUs and, when it does not, what to pass to see them; then
# runs the command (through NGC's own entrypoint when the base image has one).
# The GPUs are visible when the runtime mounted the driver's nvidia-smi and /dev/nvidia* into the
# container: docker does so with --gpus all (NVIDIA Container Toolkit), Apptainer with --nv.
if gpus=$(nvidia-smi -L 2> /dev/null) && [ -n "$gpus" ]; then
  printf '%s\n' "$gpus" | sed 's/^/gpu-check: /' >&2
else
  if [ -n "${APPTAINER_CONTAINER:-}${SINGULARITY_CONTAINER:-}" ]; then
    hint="pass --nv to apptainer (apptainer exec --nv IMAGE.sif ...)"
  else
    hint="pass --gpus all to docker (docker run --gpus all IMAGE ...)"
  fi
  echo "gpu-check: no NVIDIA GPU is visible in this container; $hint. Running without GPUs." >&2
fi
[ $# -gt 0 ] || set -- sh
if [ -x /opt/nvidia/nvidia_entrypoint.sh ]; then
  exec /opt/nvidia/nvidia_entrypoint.sh "$@"
fi
exec "$@"
