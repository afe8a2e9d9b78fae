"""Evaluation protocols: SYSU-MM01 all/indoor search over 10 trials and RegDB's 10 splits, both ways.

`run_protocol(embed, root, protocol)` embeds every needed image once (the query set and the union of
the trials' galleries), then scores each trial with `vireid.metrics`, and returns a `ProtocolResult`
with per-trial metrics, mean and spread, printable in the paper's layout and JSON-serialisable.
`rerank=Rerank()` scores each trial with k-reciprocal re-ranking (`vireid.rerank`) instead of the plain
cosine distance; the result records it, as it records whether the embedder averaged mirror images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vireid import jsonio
from vireid.choices import Choice
from vireid.embeddings import normalise_rows
from vireid.errors import ArtifactError, ConfigError
from vireid.metrics import RankMetrics, cosine_distance, evaluate_regdb, evaluate_sysu
from vireid.modality import Modality
from vireid.rerank import Rerank, k_reciprocal_distance

from .imageset import ImageSet
from .regdb import NUM_SPLITS, RegDB
from .sysu import MULTI_SHOT, SysuMM01

EmbedFn = Callable[[Sequence[Path], Modality], np.ndarray]
"""Maps image paths of one modality to L2-normalised embeddings `[N, D]`."""

METRIC_KEYS = ("R1", "R5", "R10", "R20", "mAP", "mINP")


class Protocol(Choice):
    """Standard cross-modal evaluation protocols."""

    SYSU_ALL = "sysu-all"
    SYSU_INDOOR = "sysu-indoor"
    REGDB_V2T = "regdb-v2t"
    REGDB_T2V = "regdb-t2v"

    @property
    def is_sysu(self) -> bool:
        return self in (Protocol.SYSU_ALL, Protocol.SYSU_INDOOR)

    @property
    def query_modality(self) -> Modality:
        """The modality of the standard protocol's queries (SYSU: infrared)."""
        return Modality.VISIBLE if self is Protocol.REGDB_V2T else Modality.INFRARED

    def reversed(self) -> Protocol | None:
        """RegDB's other direction; None for SYSU, whose reverse is `run_protocol(..., reverse=True)`."""
        other = {Protocol.REGDB_V2T: Protocol.REGDB_T2V, Protocol.REGDB_T2V: Protocol.REGDB_V2T}.get(self)
        # Protocol(member) is the member itself; it tells mypy the type (it sees `Choice` as Any)
        return None if other is None else Protocol(other)


@dataclass(frozen=True)
class TrialResult:
    """Metrics of one trial (SYSU gallery draw) or split (RegDB)."""

    trial: int
    metrics: RankMetrics
    num_query: int
    num_gallery: int
    num_gallery_ids: int
    """Distinct identities in the gallery: a rank-k figure means little when it is close to k."""


@dataclass(frozen=True, eq=False)  # numpy fields: == would be ambiguous
class ProtocolResult:
    """Per-trial metrics of a protocol run with their mean and standard deviation."""

    protocol: Protocol
    shots: int
    trials: tuple[TrialResult, ...]
    cmc: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    reverse: bool = False
    rerank: Rerank | None = None
    flip: bool = False
    """Embeddings averaged with the mirror image's (set by the evaluator that did it)."""

    @property
    def direction(self) -> str:
        """`query→gallery` modalities, e.g. `infrared→visible`."""
        query = self.protocol.query_modality
        if self.reverse:
            query = query.other
        return f"{query}→{query.other}"

    def _values(self) -> dict[str, np.ndarray]:
        rows = [t.metrics.as_dict() for t in self.trials]
        return {key: np.array([row[key] for row in rows]) for key in METRIC_KEYS}

    def mean(self) -> dict[str, float]:
        """Mean of each metric over trials (fractions)."""
        return {key: float(v.mean()) for key, v in self._values().items()}

    def std(self) -> dict[str, float]:
        """Standard deviation of each metric over trials (fractions)."""
        return {key: float(v.std()) for key, v in self._values().items()}

    def table(self) -> str:
        """The averaged result in the papers' layout (percent, mean ± std over trials)."""
        mean, std = self.mean(), self.std()
        shot = "single-shot" if self.shots == 1 else f"multi-shot ({self.shots})"
        title = f"{self.protocol.value}{' reversed' if self.reverse else ''} ({self.direction}), {shot}, "
        title += f"{len(self.trials)} trial(s)" + "".join(f", {note}" for note in self.test_time())
        head = "  ".join(f"{k:>13}" for k in METRIC_KEYS)
        body = "  ".join(f"{100 * mean[k]:6.2f} ± {100 * std[k]:4.2f}" for k in METRIC_KEYS)
        return f"{title}\n{head}\n{body}\n{self.counts()}"

    def counts(self) -> str:
        """How much was scored: a rank-k figure over a gallery of few identities says little."""
        first = self.trials[0]
        same = all(
            (t.num_query, t.num_gallery, t.num_gallery_ids)
            == (first.num_query, first.num_gallery, first.num_gallery_ids)
            for t in self.trials
        )
        each = "each trial" if same else "first trial"
        chance = 100 / max(first.num_gallery_ids, 1)
        return (
            f"{first.num_query} queries against {first.num_gallery} gallery images of "
            f"{first.num_gallery_ids} identities ({each}); a random ranking's R1 is about {chance:.2g} %"
        )

    def test_time(self) -> list[str]:
        """What the numbers include beyond a plain nearest-neighbour ranking (empty: nothing)."""
        notes = ["mirror-averaged embeddings"] if self.flip else []
        return notes + ([self.rerank.describe()] if self.rerank else [])

    def to_dict(self) -> dict:
        """JSON-serialisable summary (fractions), with the averaged CMC curve."""
        return {
            "protocol": self.protocol.value,
            "direction": self.direction,
            "reverse": self.reverse,
            "shots": self.shots,
            "num_trials": len(self.trials),
            "flip": self.flip,
            "rerank": None if self.rerank is None else dataclasses.asdict(self.rerank),
            "mean": self.mean(),
            "std": self.std(),
            "cmc": [float(x) for x in self.cmc],
            "trials": [
                {
                    "trial": t.trial,
                    "num_query": t.num_query,
                    "num_gallery": t.num_gallery,
                    "num_gallery_ids": t.num_gallery_ids,
                    **t.metrics.as_dict(),
                }
                for t in self.trials
            ],
        }

    def to_json(self) -> str:
        return jsonio.dumps(self.to_dict(), indent=2)


class _EmbeddingCache:
    """Embeds each (path, modality) once across trials."""

    def __init__(self, embed: EmbedFn) -> None:
        self._embed = embed
        self._vectors: dict[tuple[Path, int], np.ndarray] = {}

    def warm(self, images: ImageSet) -> None:
        for modality in np.unique(images.modalities):
            todo = sorted(
                {p for p, m in zip(images.paths, images.modalities, strict=True) if m == modality}
                - {p for p, m in self._vectors if m == modality}
            )
            if not todo:
                continue
            vectors = np.asarray(self._embed(todo, Modality(int(modality))), dtype=np.float32)
            if vectors.shape[0] != len(todo) or vectors.ndim != 2:
                raise ConfigError(f"embed function returned {vectors.shape} for {len(todo)} images")
            vectors, bad = normalise_rows(vectors)  # cosine ranking, as the runtime compares them
            if len(bad):
                raise ArtifactError(
                    f"the model gave zero, NaN or infinite embeddings for {len(bad)} of {len(todo)} "
                    f"{Modality(int(modality)).name.lower()} images (first: {todo[bad[0]]}); rankings of "
                    "such vectors mean nothing. An FP16 or INT8 artifact overflowing is the usual cause: "
                    "compare it with its source by `vireid verify`."
                )
            self._vectors.update({(p, int(modality)): v for p, v in zip(todo, vectors, strict=True)})

    def features(self, images: ImageSet) -> np.ndarray:
        self.warm(images)
        keys = zip(images.paths, images.modalities.tolist(), strict=True)
        return np.stack([self._vectors[key] for key in keys])


def _trial_list(trials: int | Sequence[int], protocol: Protocol) -> list[int]:
    if isinstance(trials, int):
        if trials < 1:
            raise ConfigError(f"trials must be >= 1, got {trials}")
        first = 0 if protocol.is_sysu else 1
        trials = range(first, first + trials)
    trials = list(trials)
    if not trials:
        raise ConfigError("trials is empty; give a count (e.g. 10) or a list of trial numbers")
    if protocol.is_sysu and any(not 0 <= t < 2**32 for t in trials):
        raise ConfigError(f"SYSU trials are seeds from 0 to 2**32 - 1, got {trials}")
    if not protocol.is_sysu and any(not 1 <= t <= NUM_SPLITS for t in trials):
        raise ConfigError(f"RegDB splits are 1..{NUM_SPLITS}, got {trials}")
    return trials


def check_dataset(
    root: str | Path, protocol: Protocol | str, shots: int = 1, trials: int | Sequence[int] = 10
) -> None:
    """Refuse a dataset folder or option the protocol cannot run on, before any model is loaded: the
    folder's layout (SYSU-MM01 or RegDB, as the protocol needs), the number of shots and the trials,
    and what the run will read of the folder: for SYSU, a non-empty query set and gallery; for RegDB,
    the test index files of every requested split (`trials`, as `run_protocol` takes it) and the images
    they list. A broken file is then found in seconds, not after the model has embedded earlier splits.

    Raises:
        ConfigError: an unknown protocol, multi-shot on RegDB, or trials the protocol has not.
        DatasetError: the folder does not follow the protocol's layout, or a file the run reads is bad.
    """
    proto: Protocol = Protocol.parse(protocol)
    trial_ids = _trial_list(trials, proto)
    if proto.is_sysu:
        data = SysuMM01(root)
        if shots not in (1, MULTI_SHOT):
            raise ConfigError(f"shots must be 1 (single-shot) or 10 (multi-shot), got {shots}")
        data.check_protocol(_sysu_mode(proto), shots)
    else:
        regdb = RegDB(root)
        if shots != 1:
            raise ConfigError("RegDB has no multi-shot protocol; use shots=1")
        _regdb_test_splits(regdb, proto, trial_ids)


def _sysu_mode(protocol: Protocol) -> str:
    """The SYSU search mode of a SYSU protocol."""
    return "all" if protocol is Protocol.SYSU_ALL else "indoor"


def _regdb_test_splits(data: RegDB, protocol: Protocol, trials: list[int]) -> list[tuple[ImageSet, ImageSet]]:
    """The (query, gallery) test images of each split in `trials`, every index file read (and every image
    it lists checked) before anything is embedded."""
    query = protocol.query_modality
    return [(data.split(trial, "test", query), data.split(trial, "test", query.other)) for trial in trials]


def run_protocol(
    embed: EmbedFn,
    root: str | Path,
    protocol: Protocol | str,
    shots: int = 1,
    trials: int | Sequence[int] = 10,
    max_rank: int = 20,
    reverse: bool = False,
    split: str = "test",
    rerank: Rerank | None = None,
) -> ProtocolResult:
    """Evaluate an embedding function on a dataset folder with a standard protocol.

    `split="val"` runs a SYSU protocol on the val identities instead of the test ones (validation
    during training with `data.val_split: val`); RegDB has no val identities.

    `reverse=True` runs the protocol the other way round: for SYSU, each trial's visible gallery images
    become the queries and the infrared query set the gallery (camera 3 removed for camera-2 queries);
    for RegDB, the other direction's protocol. It measures visible→infrared retrieval separately, which a
    model or a quantisation can favour or hurt independently of infrared→visible.

    `rerank` ranks each trial by k-reciprocal re-ranking over its queries and gallery together.
    """
    proto: Protocol = Protocol.parse(protocol)
    if max_rank < 1:
        raise ConfigError(f"max_rank must be >= 1, got {max_rank}")
    if split != "test" and not proto.is_sysu:
        raise ConfigError(f"RegDB protocols run on a split's test identities; got split {split!r}")
    if reverse and not proto.is_sysu:
        return run_protocol(embed, root, proto.reversed() or proto, shots, trials, max_rank, rerank=rerank)
    trial_ids = _trial_list(trials, proto)
    cache = _EmbeddingCache(embed)
    if proto.is_sysu:
        distance = _distance_fn(rerank)
        results = _run_sysu(
            cache, SysuMM01(root), proto, shots, trial_ids, max_rank, distance, reverse, split
        )
    else:
        if shots != 1:
            raise ConfigError("RegDB has no multi-shot protocol; use shots=1")
        results = _run_regdb(cache, RegDB(root), proto, trial_ids, max_rank, _distance_fn(rerank))
    cmc = np.mean([_pad(t.metrics.cmc, max_rank) for t in results], axis=0)
    return ProtocolResult(
        protocol=proto, shots=shots, trials=tuple(results), cmc=cmc, reverse=reverse, rerank=rerank
    )


DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _distance_fn(rerank: Rerank | None) -> DistanceFn:
    if rerank is None:
        return cosine_distance
    return lambda queries, gallery: k_reciprocal_distance(queries, gallery, rerank)


def _ids(images: ImageSet) -> int:
    return len(np.unique(images.pids))


def _pad(cmc: np.ndarray, length: int) -> np.ndarray:
    return np.concatenate([cmc, np.full(length - len(cmc), cmc[-1])]) if len(cmc) < length else cmc


def _run_sysu(
    cache: _EmbeddingCache,
    data: SysuMM01,
    protocol: Protocol,
    shots: int,
    trials: list[int],
    max_rank: int,
    distance: DistanceFn,
    reverse: bool = False,
    split: str = "test",
) -> list[TrialResult]:
    mode = _sysu_mode(protocol)
    infrared = data.query(mode, split)
    galleries = [data.gallery(mode, trial, shots, split) for trial in trials]
    cache.warm(ImageSet.concat([infrared, *galleries]))
    ir_feats = cache.features(infrared)
    results = []
    for trial, visible in zip(trials, galleries, strict=True):
        vis_feats = cache.features(visible)
        if reverse:
            distmat = distance(vis_feats, ir_feats)
            metrics = evaluate_sysu(
                distmat, visible.pids, infrared.pids, visible.camids, infrared.camids, max_rank, ((2, 3),)
            )
            results.append(TrialResult(trial, metrics, len(visible), len(infrared), _ids(infrared)))
        else:
            distmat = distance(ir_feats, vis_feats)
            metrics = evaluate_sysu(
                distmat, infrared.pids, visible.pids, infrared.camids, visible.camids, max_rank
            )
            results.append(TrialResult(trial, metrics, len(infrared), len(visible), _ids(visible)))
    return results


def _run_regdb(
    cache: _EmbeddingCache,
    data: RegDB,
    protocol: Protocol,
    trials: list[int],
    max_rank: int,
    distance: DistanceFn,
) -> list[TrialResult]:
    results = []
    splits = _regdb_test_splits(data, protocol, trials)  # a bad split fails before any embedding
    for trial, (query, gallery) in zip(trials, splits, strict=True):
        distmat = distance(cache.features(query), cache.features(gallery))
        metrics = evaluate_regdb(distmat, query.pids, gallery.pids, max_rank)
        results.append(TrialResult(trial, metrics, len(query), len(gallery), _ids(gallery)))
    return results
