"""Concept atlas on a real Dask cluster (two worker processes): same results as in-process,
and a worker lost mid-run costs nothing finished."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lrp_widgets import data, models
from lrp_widgets.analysis import concept_atlas

distributed = pytest.importorskip("distributed")

LAYER = "features.9"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def model():
    return models.load("embedded").double()


@pytest.fixture(scope="module")
def ds():
    return data.shapes(n=30, seed=5)


def assert_same_atlas(a, b):
    assert a.n_samples == b.n_samples and a.n_channels == b.n_channels
    for c in range(a.n_channels):
        for by in ("relevance", "activation"):
            got, want = a.top(c, by), b.top(c, by)
            assert [i for i, _ in got] == [i for i, _ in want], (c, by)
            torch.testing.assert_close(torch.tensor([s for _, s in got]),
                                       torch.tensor([s for _, s in want]), rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.from_numpy(a.class_relevance),
                               torch.from_numpy(b.class_relevance), rtol=1e-12, atol=1e-15)
    assert a.class_counts.tolist() == b.class_counts.tolist()


def test_dask_equals_in_process(client, model, ds, tmp_path):
    local = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=3)
    progress = []
    remote = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=3, client=client,
                           progress=lambda d, t: progress.append((d, t)))
    assert_same_atlas(remote, local)
    assert progress[-1] == (30, 30) and len(progress) == 8      # 10 batches in 8 shards
    stored = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=3, client=client,
                           store=tmp_path / "a.zarr")
    assert_same_atlas(stored, local)
    reopened = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=3, store=tmp_path / "a.zarr")
    assert_same_atlas(reopened, local)
    assert [c.index for c in remote.crops(2)] == [i for i, _ in local.top(2)]


class DiesOnce(torch.utils.data.Dataset):
    """Reading ``fatal`` kills the worker process the first time (a lost worker mid-shard);
    every read in a worker is logged, to see what was computed twice."""

    def __init__(self, dataset, fatal: int, folder: Path) -> None:
        self.dataset, self.fatal, self.folder = dataset, fatal, folder
        self.parent = os.getpid()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        if os.getpid() != self.parent:
            with open(self.folder / "reads.log", "a") as log:
                log.write(f"{i}\n")
            if i == self.fatal and not (self.folder / "died").exists():
                (self.folder / "died").write_text("")
                os._exit(1)
        return self.dataset[i]


def test_a_worker_lost_mid_run_is_replaced_and_nothing_finished_is_recomputed(
        client, model, ds, tmp_path):
    local = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=3)
    # Batches of 3; 10 batches in 8 shards: [0], [1], [2], [3, 4], [5], [6], [7], [8, 9].
    # The worker dies reading sample 19, in batch 6 (18-20), after reading 18. Whatever it
    # had finished (a result not yet fetched included) is in the store and read back when
    # Dask reruns the task: the samples of finished batches are never read again.
    dying = DiesOnce(ds, fatal=19, folder=tmp_path)
    atlas = concept_atlas(model, LAYER, dying, n_ref=4, batch_size=3, client=client,
                          store=tmp_path / "a.zarr")
    assert (tmp_path / "died").exists()
    assert_same_atlas(atlas, local)
    reads = [int(line) for line in (tmp_path / "reads.log").read_text().split()]
    twice = sorted({i for i in reads if reads.count(i) > 1})
    assert set(reads) == set(range(30))
    # Only the batch cut short is redone. (On a machine so loaded that the scheduler also
    # gives up on a live worker, Dask may redo that worker's unfinished batch too.)
    assert {18, 19} <= set(twice) and len(twice) <= 2 + 3, twice
    client.wait_for_workers(2, timeout=300)  # the nanny replaces the lost worker
