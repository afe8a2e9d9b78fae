"""Cross-modal identity sampler: every batch holds P identities with K visible and K infrared images each.

The batch is laid out as the visible half followed by the infrared half, in the same identity order, so
losses can pair the two halves. Identities without images in both modalities are never drawn.
Sampling is a pure function of (seed, epoch, rank), which makes resume exact and lets each
distributed process draw different identities without communication.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vireid.errors import ConfigError
from vireid.modality import Modality


@dataclass(frozen=True)
class Batch:
    """Indices into the training set, visible half first, with their class labels."""

    indices: np.ndarray
    labels: np.ndarray


class CrossModalIdentitySampler:
    """Draws `P x K` visible + `P x K` infrared image indices per batch."""

    def __init__(
        self,
        labels: np.ndarray,
        modalities: np.ndarray,
        num_ids: int,
        num_instances: int,
        iters_per_epoch: int | None = None,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        labels, modalities = np.asarray(labels), np.asarray(modalities)
        self.by_modality = {
            m: _group(labels, modalities, int(m)) for m in (Modality.VISIBLE, Modality.INFRARED)
        }
        both = sorted(set(self.by_modality[Modality.VISIBLE]) & set(self.by_modality[Modality.INFRARED]))
        if len(both) < num_ids:
            raise ConfigError(
                f"sampler.num_ids={num_ids} but only {len(both)} identities have images in both modalities; "
                "lower sampler.num_ids or use a larger dataset"
            )
        self.identities = np.array(both)
        self.num_ids, self.num_instances = num_ids, num_instances
        visible_images = int((modalities == int(Modality.VISIBLE)).sum())
        self.iters_per_epoch = iters_per_epoch or max(1, visible_images // (num_ids * num_instances))
        self.seed, self.rank = seed, rank

    @property
    def batch_size(self) -> int:
        return 2 * self.num_ids * self.num_instances

    def __len__(self) -> int:
        return self.iters_per_epoch

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch; identical for the same (seed, epoch, rank)."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        for _ in range(self.iters_per_epoch):
            ids = rng.choice(self.identities, self.num_ids, replace=False)
            halves = [self._draw(rng, ids, m) for m in (Modality.VISIBLE, Modality.INFRARED)]
            labels = np.repeat(ids, self.num_instances)
            yield Batch(indices=np.concatenate(halves), labels=np.concatenate([labels, labels]))

    def _draw(self, rng: np.random.Generator, ids: np.ndarray, modality: Modality) -> np.ndarray:
        groups = self.by_modality[modality]
        picks = [
            rng.choice(groups[i], self.num_instances, replace=len(groups[i]) < self.num_instances)
            for i in ids
        ]
        return np.concatenate(picks)


def _group(labels: np.ndarray, modalities: np.ndarray, modality: int) -> dict[int, np.ndarray]:
    index = np.flatnonzero(modalities == modality)
    return {int(label): index[labels[index] == label] for label in np.unique(labels[index])}
