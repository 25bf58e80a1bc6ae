"""`detector train` across machines: two torchrun "nodes" (c10d rendezvous) on 127.0.0.1 over gloo.

Each node is its own `torchrun --nnodes=2 --nproc_per_node=1 --rdzv-backend=c10d` invocation, started
in its own working directory as on two machines (docs/distributed.md). The command each node runs is
`python -m pydarknet.cli detector train ...` through `rank_weights.py` below, which also saves the
weights its rank ends with, so that the two ranks can be compared (only rank 0 writes backups).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pydarknet.network import Darknet, load_network
from pydarknet.weights import WeightsHeader
from test_train_loop import LINE, _cfg, dataset  # noqa: F401  (dataset: the module fixture)

pytestmark = pytest.mark.slow

ITERATIONS = 100          # the first `<cfg>.backup` and `<cfg>_100.weights`
REPO = Path(__file__).resolve().parent.parent

# Runs the CLI module as `python -m pydarknet.cli` does, keeping a handle on the net DarknetSGD is made for.
RANK_WEIGHTS = """
import os, runpy, sys
import pydarknet.engine.train as train
from pydarknet.weights import save_weights
nets, optimizer = [], train.DarknetSGD
train.DarknetSGD = lambda net: (nets.append(net), optimizer(net))[1]
sys.argv = ["pydarknet", *sys.argv[1:]]
try:
    runpy.run_module("pydarknet.cli", run_name="__main__", alter_sys=True)
except SystemExit as exit_:
    if exit_.code:
        raise
save_weights(nets[0], f"rank{os.environ['RANK']}.weights")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes(dataset, tmp_path_factory):  # noqa: F811  (the fixture imported above)
    """Both nodes' completed processes and working directories, after ITERATIONS iterations."""
    root = tmp_path_factory.mktemp("nodes")
    cfg = _cfg(root)
    script = root / "rank_weights.py"
    script.write_text(RANK_WEIGHTS)
    port = _free_port()
    # CUDA hidden: with CUDA present the engine picks NCCL and cuda:LOCAL_RANK whatever --device says
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    nodes = []
    for node_rank in (0, 1):
        node = root / f"node{node_rank}"
        node.mkdir()
        data = node / "synth.data"   # backup=backup: relative to each node's working directory
        data.write_text(f"classes=5\ntrain={dataset.parent / 'train.txt'}\nbackup=backup\n")
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                   f"--node_rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                   "--rdzv-id=pydarknet-test", str(script), "detector", "train", str(data), str(cfg),
                   "--workers", "0", "--max-batches", str(ITERATIONS), "--device", "cpu"]
        nodes.append((node, subprocess.Popen(command, cwd=node, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)))
    finished = []
    for node, process in nodes:
        stdout, stderr = process.communicate(timeout=600)
        finished.append((node, process.returncode, stdout, stderr))
    return cfg, finished


def test_both_nodes_exit_zero(two_nodes):
    _, finished = two_nodes
    for node, code, _, stderr in finished:
        assert code == 0, f"{node.name}: exit {code}\n{stderr[-3000:]}"


def test_rank0_prints_and_writes_the_backups_once(two_nodes):
    _, finished = two_nodes
    printed = [[line for line in stdout.splitlines() if LINE.match(line)] for _, _, stdout, _ in finished]
    # c10d assigns the ranks at the rendezvous (--node_rank only orders a static one): either node can be rank 0
    rank0 = next(i for i, (node, _, _, _) in enumerate(finished) if (node / "rank0.weights").exists())
    other = finished[1 - rank0][0]
    # DARKNET(detector.c:train_detector): the iteration counter advances by the GPU count per round, and
    # `images` is that counter times batch * ngpus
    assert [LINE.match(line).group(1) for line in printed[rank0]] == [str(i) for i in range(2, ITERATIONS + 1, 2)]
    assert LINE.match(printed[rank0][-1]).group(5) == f"{ITERATIONS * 4 * 2}"   # 2 nodes x batch 4
    assert "Learning Rate: 0.002," in finished[rank0][2]                # DARKNET: rate x GPU count
    assert printed[1 - rank0] == []
    backups = sorted(p.name for p in (finished[rank0][0] / "backup").iterdir())
    assert backups == ["chart.png", "tiny.backup", "tiny_100.weights", "tiny_final.weights", "tiny_log.csv"]
    assert not any((other / "backup").iterdir())


def test_ranks_end_with_identical_weights(two_nodes):
    """DDP averages the gradients, so both ranks apply the same updates to the same parameters. The BN
    rolling statistics are rank 0's, broadcast before every forward, plus each rank's own last mini-batch."""
    cfg, finished = two_nodes
    nets = [load_network(cfg, node / f"rank{rank}.weights", "cpu")
            for rank in (0, 1) for node, *_ in finished if (node / f"rank{rank}.weights").exists()]
    assert len(nets) == 2
    first, second = (dict(net.named_parameters()) for net in nets)
    initial = dict(Darknet.from_cfg(cfg, seed=0).named_parameters())   # what train_detector starts from
    for key, value in first.items():
        np.testing.assert_array_equal(value.detach().numpy(), second[key].detach().numpy(), err_msg=key)
    assert all(not np.array_equal(first[k].detach().numpy(), initial[k].detach().numpy()) for k in first)
    rank0 = next(node for node, *_ in finished if (node / "rank0.weights").exists())
    saved = load_network(cfg, rank0 / "backup" / "tiny_final.weights", "cpu").state_dict()
    for key, value in nets[0].state_dict().items():
        np.testing.assert_array_equal(value.numpy(), saved[key].numpy(), err_msg=key)


def test_seen_counts_the_global_batch(two_nodes):
    """DARKNET(network.c:sync_nets): seen gains the other GPUs' images; the run ends at max_batches
    iterations of the global count, i.e. after the images of a one-GPU run (ITERATIONS x batch 4)."""
    _, finished = two_nodes
    final = next(node for node, *_ in finished if any((node / "backup").glob("*_final.weights")))
    header = WeightsHeader.unpack((final / "backup" / "tiny_final.weights").read_bytes()[:20], "final")
    assert header.seen == ITERATIONS * 4
