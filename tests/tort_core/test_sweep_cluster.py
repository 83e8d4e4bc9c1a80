"""A sweep on a simulated cluster (ray.cluster_utils.Cluster: a head and two worker nodes on this
machine): trials spread over the nodes, results land only in the driver's store, and a node
removed in the middle of a trial sends the trial to another node, where it resumes from its last
checkpointed epoch through the shared run directory, with nothing lost or written twice."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY = {"optim.warmup_epochs": 0, "optim.cooldown_epochs": 0, "views.n_local": 2, "batch_size": 16,
        "data.train_limit": 48, "data.test_limit": 32, "data.eval_batch_size": 64, "checkpoint_write": "sync"}


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_DEDUP_LOGS"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    # The head runs the driver only (no CPU for trials); each worker node runs one trial at a time.
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def test_trials_spread_and_a_lost_node_resumes_its_trial_elsewhere(cluster, tmp_path):
    from tort_core.store import load_epochs, load_trials
    from tort_core.sweep import run_sweep

    c, workers = cluster
    spec = tmp_path / "cluster.yaml"
    spec.write_text(yaml.safe_dump({"name": "cluster", "profile": "demo", "overrides": TINY, "retries": 2,
                                    "max_concurrent": 2,
                                    "zip": [{"loss.teacher_temp": [0.04, 0.05], "epochs": [2, 8]}]}))
    results = tmp_path / "results"
    outcome: dict = {}
    driver = threading.Thread(target=lambda: outcome.setdefault("out", run_sweep(
        spec, results_dir=results, wandb=False, progress=False, cpus_per_trial=1, gpus_per_trial=0)))
    driver.start()

    # Once the long trial has checkpointed its second epoch, remove the node it runs on.
    removed = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.is_alive() and removed is None:
        trials = load_trials(results)
        epochs = load_epochs(results)
        if not trials.empty and "hw.ray_node" in trials.columns and not epochs.empty:
            long = trials[trials["epochs"] == 8]
            done = epochs[epochs["trial_id"].isin(long["trial_id"])]
            if len(long) and len(done) >= 2 and isinstance(long["hw.ray_node"].iloc[0], str):
                node = next(w for w in workers if w.node_id == long["hw.ray_node"].iloc[0])
                c.remove_node(node, allow_graceful=False)
                removed = node.node_id
        time.sleep(0.2)
    assert removed is not None, "the long trial never reached its second epoch"
    c.add_node(num_cpus=1)  # capacity for the retry (the other worker may still be busy)
    driver.join(timeout=400)
    assert not driver.is_alive()
    out = outcome["out"]
    assert out.counts() == {"completed": 2}, out.trials

    trials = load_trials(results).set_index("epochs")
    epochs = load_epochs(results)
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    per_trial = epochs.groupby("trial_id")["epoch"].apply(sorted).to_dict()
    assert per_trial[trials.loc[8, "trial_id"]] == list(range(1, 9))
    assert per_trial[trials.loc[2, "trial_id"]] == [1, 2]
    long = trials.loc[8]
    # retried on another node, resumed from a checkpointed epoch rather than from scratch
    assert long["attempts"] == 2 and long["hw.ray_node"] != removed and long["resumed_from_epoch"] >= 2
    # the two trials started together on the two nodes (one CPU each): spread, not stacked
    assert trials.loc[2, "hw.ray_node"] != removed
    # results live only in the driver's store: no other database anywhere under the results
    assert [p.relative_to(results) for p in results.rglob("*.sqlite")] == [Path("store.sqlite")]
