"""CrossModalPKSampler guarantees: batch layout, coverage, replacement, determinism, disjoint DDP ranks."""

from __future__ import annotations

import pytest

from train.data.records import IR, RGB, Record
from train.data.sampler import CrossModalPKSampler


def make_records(n_ids: int = 21, rgb: int = 6, ir: int = 5) -> list[Record]:
    records = []
    for pid in range(100, 100 + n_ids):
        n_rgb = 2 if pid == 103 else rgb  # fewer than K: sampled with replacement
        records += [Record(f"{pid}_rgb_{i}.jpg", pid, 1 + i % 2, RGB) for i in range(n_rgb)]
        records += [Record(f"{pid}_ir_{i}.jpg", pid, 3, IR) for i in range(ir)]
    records.append(Record("only_rgb.jpg", 999, 1, RGB))  # no IR at all: cannot be sampled
    return records


def test_batch_layout_and_coverage() -> None:
    records = make_records()
    s = CrossModalPKSampler(records, p=4, k=3, seed=1)
    batches = list(s)
    assert len(batches) == len(s) == 6  # ceil(21 / 4)
    seen = set()
    for batch in batches:
        assert len(batch) == 4 * 2 * 3
        groups = [batch[i:i + 6] for i in range(0, len(batch), 6)]  # (P, 2K)
        assert len({records[g[0]].pid for g in groups}) == 4  # P distinct ids
        for g in groups:
            pid = records[g[0]].pid
            assert all(records[i].pid == pid for i in g)
            assert [records[i].modality for i in g] == [RGB] * 3 + [IR] * 3
            seen.add(pid)
            if pid != 103:
                assert len(set(g[:3])) == 3 and len(set(g[3:])) == 3  # without replacement when possible
    assert seen == set(range(100, 121))
    assert s.skipped_pids == [999]


def test_deterministic_per_seed_and_epoch() -> None:
    records = make_records()
    a, b = CrossModalPKSampler(records, seed=3), CrossModalPKSampler(records, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(CrossModalPKSampler(records, seed=4)) != list(CrossModalPKSampler(records, seed=3))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_are_disjoint_equal_length_and_cover_all(world_size: int) -> None:
    records = make_records()
    samplers = [CrossModalPKSampler(records, p=4, k=2, seed=5, rank=r, world_size=world_size, passes=2)
                for r in range(world_size)]
    for s in samplers:
        s.set_epoch(2)
    per_rank = [list(s) for s in samplers]
    assert all(len(b) == len(samplers[0]) for b in per_rank)  # same number of steps on every rank
    as_sets = [{tuple(b) for b in batches} for batches in per_rank]
    for i in range(world_size):
        for j in range(i + 1, world_size):
            assert not as_sets[i] & as_sets[j]
    single = CrossModalPKSampler(records, p=4, k=2, seed=5, passes=2)
    single.set_epoch(2)
    union = {records[i].pid for batches in per_rank for b in batches for i in b}
    assert union == {records[i].pid for b in single for i in b} == set(range(100, 121))
    assert len(samplers[0]) * world_size >= len(single)


def test_refusals() -> None:
    with pytest.raises(ValueError, match="no identity has both colour and infrared"):
        CrossModalPKSampler([Record("a.jpg", 1, 1, RGB)], p=1)
    with pytest.raises(ValueError, match="fewer than p=8"):
        CrossModalPKSampler(make_records(n_ids=5))
    with pytest.raises(ValueError, match="rank < world_size"):
        CrossModalPKSampler(make_records(), rank=2, world_size=2)
    with pytest.raises(ValueError, match="must be >= 1"):
        CrossModalPKSampler(make_records(), k=0)
