"""Print the model card of an exported artifact (.onnx, or an engine with its .json sidecar)."""

from __future__ import annotations

import argparse

from ..card import ModelCard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid info`."""
    parser.add_argument("artifact", help="path of an .onnx file or a TensorRT .engine")
    parser.add_argument("--json", action="store_true", help="print the card as JSON")


def run(args: argparse.Namespace) -> int:
    """Print the card."""
    card = ModelCard.from_artifact(args.artifact)
    if args.json:
        print(card.to_json())
        return 0
    h, w = card.input_size
    print(f"model          {card.model_name} ({card.precision.value})")
    print(f"input          images uint8 [N, {h}, {w}, 3] {card.color_order}, modality int32 [N]")
    print(f"modalities     {', '.join(str(m) for m in card.modalities)}")
    print(f"embedding      {card.embedding_dim}-d, L2-normalised: {card.normalized}")
    print(f"threshold      {card.match_threshold} (false-match rate {card.match_threshold_fmr})")
    print(f"embedding id   {card.embedding_space()}")
    print(f"vireid         {card.vireid_version}, card schema {card.schema_version}")
    return 0
