"""Which attributes of synthetic people a model reads, and what reading them is worth.

    .venv/bin/python tools/attribute_probe.py MODEL --data HELDOUT [--json F]

MODEL is a training checkpoint or an exported artifact (`.onnx`, ...); HELDOUT a set made by `vireid
synth sysu` with a seed the model did not train on (its meta.json names the seed that decides every
person's attributes). On the set's test identities it prints three Markdown tables (docs/results.md
and docs/results-history.md report them):

1. the oracle ladder: identity-level Rank-1 of a perfect reader of more and more attributes;
2. the linear probe: per attribute, the accuracy of a ridge probe from the embeddings, fitted on half
   the identities and tested on the other half (both ways, averaged), within each modality and across
   (fitted on visible, tested on infrared);
3. the infrared queries whose first match (nearest visible identity centroid) is wrong: how often that
   wrong identity shares each attribute, against two random identities.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from vireid import jsonio
from vireid.atomic import write_atomic
from vireid.modality import Modality
from vireid.training.data.synth.attributes import (
    HIDDEN,
    attribute_table,
    majority_share,
    oracle_rank1,
    probe_accuracy,
)
from vireid.training.data.sysu import INFRARED_CAMERAS, VISIBLE_CAMERAS, SysuMM01

LADDER = ("lower", "coat", "hair", "sleeve", "bag", "build", "stature", "hat", "top_pattern")
PROBED = ("lower", "coat", "hair", "sleeve", "bag", "build", "hat", "top_pattern", "top_thickness")


def generator_seed(root: Path) -> int:
    """The seed of a `vireid synth sysu` folder, from its meta.json."""
    meta_path = root / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"{meta_path}: not readable ({exc}); HELDOUT must come from `vireid synth sysu`"
        ) from None
    if meta.get("generator") != "vireid.synth" or meta.get("kind") != "sysu":
        raise SystemExit(f"{meta_path}: not a `vireid synth sysu` set; attributes exist only for those")
    return int(meta["seed"])


def embedder_for(model: str, batch: int):
    """A callable (paths, modality) -> embeddings for a checkpoint (PyTorch) or an artifact."""
    from vireid.training.evaluate import ArtifactEmbedder, TorchEmbedder, is_checkpoint, load_model

    if is_checkpoint(model):
        net, size = load_model(model)
        return TorchEmbedder(net, size, batch)
    return ArtifactEmbedder(model, "cpu", batch)


def oracle_ladder(seed: int, pids: list[int]) -> list[dict]:
    """Rank-1 of a perfect reader of the first k attributes of `LADDER`, for every k."""
    return [
        {"attributes": list(LADDER[:k]), "R1": oracle_rank1(attribute_table(seed, pids, LADDER[:k]))}
        for k in range(1, len(LADDER) + 1)
    ]


def probe_table(seed: int, embeddings: dict[str, np.ndarray], pids: dict[str, np.ndarray]) -> list[dict]:
    """Two-fold probe accuracies per attribute (identities split in halves, seeded)."""
    people = np.unique(pids["visible"])
    halves = np.array_split(np.random.default_rng(0).permutation(people), 2)
    rows = []
    for name in PROBED:
        labels = {m: attribute_table(seed, pids[m].tolist(), [name])[:, 0] for m in embeddings}
        cells: dict[str, list[float]] = {}
        for fit_half, test_half in ((halves[0], halves[1]), (halves[1], halves[0])):
            fit = {m: np.isin(pids[m], fit_half) for m in embeddings}
            test = {m: np.isin(pids[m], test_half) for m in embeddings}
            for key, (a, b) in {
                "infrared→infrared": ("infrared", "infrared"),
                "visible→visible": ("visible", "visible"),
                "visible→infrared": ("visible", "infrared"),
            }.items():
                acc = probe_accuracy(
                    embeddings[a][fit[a]], labels[a][fit[a]], embeddings[b][test[b]], labels[b][test[b]]
                )
                cells.setdefault(key, []).append(acc)
            cells.setdefault("chance", []).append(majority_share(labels["visible"][test["visible"]]))
        rows.append({"attribute": name, **{k: float(np.nanmean(v)) for k, v in cells.items()}})
    return rows


def wrong_match_sharing(seed: int, embeddings: dict[str, np.ndarray], pids: dict[str, np.ndarray]) -> dict:
    """For infrared queries whose nearest visible identity centroid is wrong: share rates per attribute."""
    people = np.unique(pids["visible"])
    centroids = np.stack([embeddings["visible"][pids["visible"] == p].mean(0) for p in people])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    first = people[(embeddings["infrared"] @ centroids.T).argmax(1)]
    truth = pids["infrared"]
    wrong = first != truth
    table = attribute_table(seed, people.tolist(), LADDER)
    index = {int(p): i for i, p in enumerate(people)}
    rows = []
    for j, name in enumerate(LADDER):
        found, true = (
            table[[index[int(p)] for p in first[wrong]], j],
            table[[index[int(p)] for p in truth[wrong]], j],
        )
        share = np.mean(found == true)
        same = table[:, j][:, None] == table[:, j][None, :]
        base = (same.sum() - len(people)) / (len(people) * (len(people) - 1))
        rows.append(
            {
                "attribute": name,
                "wrong_first_match_shares": float(share),
                "two_random_people_share": float(base),
            }
        )
    return {"identity_level_R1": float(np.mean(~wrong)), "queries": len(truth), "rows": rows}


def markdown(ladder: list[dict], probe: list[dict], sharing: dict) -> str:
    lines = ["| perfect reader of | oracle R1 |", "|---|---|"]
    lines += [f"| {' + '.join(r['attributes'])} | {100 * r['R1']:.1f} % |" for r in ladder]
    keys = ("chance", "infrared→infrared", "visible→visible", "visible→infrared")
    lines += ["", "| attribute | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {r['attribute']} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |" for r in probe]
    lines += [
        "",
        f"identity-level R1 of the infrared queries (nearest visible centroid): "
        f"{100 * sharing['identity_level_R1']:.1f} % of {sharing['queries']}",
        "",
        "| attribute | wrong first match shares it | two random people share it |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['attribute']} | {r['wrong_first_match_shares']:.2f} | {r['two_random_people_share']:.2f} |"
        for r in sharing["rows"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="checkpoint (.safetensors) or exported artifact (.onnx, ...)")
    parser.add_argument("--data", required=True, type=Path, help="a `vireid synth sysu` folder")
    parser.add_argument("--json", type=Path, help="write the three tables here as JSON")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args(argv)
    seed = generator_seed(args.data)
    data = SysuMM01(args.data)
    test_ids = data.ids("test")
    embed = embedder_for(args.model, args.batch)
    sets = {
        "infrared": data.collect(test_ids, INFRARED_CAMERAS),
        "visible": data.collect(test_ids, VISIBLE_CAMERAS),
    }
    embeddings = {m: embed(list(s.paths), Modality.parse(m)) for m, s in sets.items()}
    pids = {m: s.pids for m, s in sets.items()}
    if hasattr(embed, "close"):
        embed.close()
    report = {
        "model": str(args.model),
        "data": str(args.data),
        "seed": seed,
        "hidden_value": HIDDEN,
        "oracle_ladder": oracle_ladder(seed, test_ids),
        "probe": probe_table(seed, embeddings, pids),
        "wrong_matches": wrong_match_sharing(seed, embeddings, pids),
    }
    print(markdown(report["oracle_ladder"], report["probe"], report["wrong_matches"]))
    if args.json:
        write_atomic(args.json, jsonio.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
