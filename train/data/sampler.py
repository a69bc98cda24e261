"""Cross-modal PK sampler: each batch holds P identities x (K colour + K infrared) images.

Batch layout (a list of dataset indices, length P * 2K): identity by identity, each identity's K colour
images followed by its K infrared images. Losses should still read the modality and label tensors the
dataset returns rather than rely on positions.

Guarantees:
- every sampled identity appears at least once per epoch (and ``passes`` times per epoch in all);
  identities lacking one modality entirely cannot form cross-modal pairs and are left out
  (``skipped_pids`` lists them);
- an identity with fewer than K images of a modality is sampled with replacement;
- deterministic per (seed, epoch) (call ``set_epoch`` each epoch, as with DistributedSampler);
- under DDP, all ranks draw the same epoch plan and take every ``world_size``-th batch from it, so
  their batches are disjoint and every rank runs the same number of steps (the plan is padded with
  batches of random identities to a multiple of ``world_size``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from .records import IR, RGB, Record

__all__ = ["CrossModalPKSampler"]


class CrossModalPKSampler:
    """Batch sampler for ``torch.utils.data.DataLoader(dataset, batch_sampler=...)``."""

    def __init__(
        self,
        records: Sequence[Record],
        p: int = 8,
        k: int = 4,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        passes: int = 1,
    ) -> None:
        if p < 1 or k < 1 or passes < 1:
            raise ValueError(f"p, k and passes must be >= 1, got p={p}, k={k}, passes={passes}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.p, self.k, self.seed, self.rank, self.world_size, self.passes = p, k, seed, rank, world_size, passes
        self.epoch = 0
        by_id: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for i, r in enumerate(records):
            by_id[r.pid][0 if r.modality == RGB else 1].append(i)
        self.index = {pid: (np.array(v[RGB]), np.array(v[IR])) for pid, v in by_id.items() if v[RGB] and v[IR]}
        self.pids = sorted(self.index)
        self.skipped_pids = sorted(pid for pid, v in by_id.items() if not (v[RGB] and v[IR]))
        if not self.pids:
            raise ValueError(
                f"no identity has both colour and infrared images ({len(by_id)} identities, "
                f"{len(records)} records); a cross-modal sampler needs both modalities"
            )
        if len(self.pids) < p:
            raise ValueError(f"only {len(self.pids)} identities have both modalities, fewer than p={p}; lower p")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _num_batches_total(self) -> int:
        per_pass = -(-len(self.pids) // self.p)  # ceil
        total = per_pass * self.passes
        return -(-total // self.world_size) * self.world_size

    def __len__(self) -> int:
        return self._num_batches_total() // self.world_size

    def _plan(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Identity groups of size P for the whole epoch (all ranks), covering every id ``passes`` times."""
        ids = np.array(self.pids)
        groups: list[np.ndarray] = []
        for _ in range(self.passes):
            perm = rng.permutation(ids)
            short = -len(perm) % self.p
            if short:  # fill the last batch with other identities (no id twice in one batch)
                fill = rng.choice(np.setdiff1d(ids, perm[-(len(perm) % self.p):]), size=short, replace=False)
                perm = np.concatenate([perm, fill])
            groups += list(perm.reshape(-1, self.p))  # (batches, P)
        while len(groups) < self._num_batches_total():
            groups.append(rng.choice(ids, size=self.p, replace=False))
        return groups

    def _draw(self, rng: np.random.Generator, pool: np.ndarray) -> list[int]:
        return rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        plan = self._plan(rng)
        for b in range(self.rank, len(plan), self.world_size):
            # Each batch has its own stream: a rank's images do not depend on what other ranks draw.
            brng = np.random.default_rng([self.seed, self.epoch, b])
            batch: list[int] = []
            for pid in plan[b]:
                rgb, ir = self.index[int(pid)]
                batch += self._draw(brng, rgb) + self._draw(brng, ir)
            yield batch
