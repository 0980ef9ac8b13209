#!/usr/bin/env bash
# Lightning DDP through torchrun: one process per GPU on this node, over one node or several.
#
#   deploy/train-ddp.sh train --config configs/demo.yaml [--set k=v ...]                      one node
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.5 deploy/train-ddp.sh train --config ...          node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.5 deploy/train-ddp.sh train --config ...          node 1
#
# Arguments are those of `python -m orchestration.pipes_entry`. Only global rank 0 reports to Dagster.
# Lightning checks devices × num_nodes against torchrun's world size, hence the explicit overrides.
set -euo pipefail

NNODES="${NNODES:-1}"
GPUS="${GPUS_PER_NODE:-$(nvidia-smi --list-gpus 2>/dev/null | wc -l)}"
if [ "${GPUS}" -lt 1 ]; then
  echo "train-ddp.sh: no GPU visible (set GPUS_PER_NODE to override)" >&2
  exit 1
fi

if [ "${NNODES}" -gt 1 ]; then
  # c10d rendezvous on node 0: every node runs the same command with its own NODE_RANK
  rendezvous=(--nnodes="${NNODES}" --node-rank="${NODE_RANK:?set NODE_RANK}" --rdzv-backend=c10d
              --rdzv-endpoint="${MASTER_ADDR:?set MASTER_ADDR}:${MASTER_PORT:-29500}" --rdzv-id="${RUN_ID:-mmcl}")
else
  rendezvous=(--standalone --nnodes=1)
fi

exec torchrun "${rendezvous[@]}" --nproc-per-node="${GPUS}" -m orchestration.pipes_entry "$@" \
  --set train.strategy=ddp --set "train.devices=${GPUS}" --set "train.num_nodes=${NNODES}"
