"""Print the model card of an exported artifact (.onnx, an engine with its .json sidecar, or a Triton model
folder with its vireid_card.json)."""

from __future__ import annotations

import argparse

from ..card import ModelCard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vireid info`."""
    parser.add_argument("artifact", help="an .onnx file, a TensorRT .engine or a Triton model folder")
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
    if card.match_threshold is None:
        print("threshold      none recorded (`vireid export ... --calibrate DIR` records one)")
    else:
        print(f"threshold      {card.match_threshold:.4f} (false-match rate {card.match_threshold_fmr})")
    if card.match_threshold_within:
        within = ", ".join(f"{k} {v:.4f}" for k, v in dict(card.match_threshold_within).items())
        print(f"same modality  {within} (same false-match rate)")
    track_means = _track_means_line(card)
    if track_means:
        print(f"track means    {track_means}")
    print(f"embedding id   {card.embedding_space()}")
    for label, value in _optional_lines(card):
        print(f"{label:14s} {value}")
    print(f"vireid         {card.vireid_version}, card schema {card.schema_version}")
    return 0


def _track_means_line(card: ModelCard) -> str | None:
    """What the threshold gives when track means meet enrolment centroids (recorded at calibration)."""
    track = (card.match_threshold_data or {}).get("track_means")
    if track is None:  # older cards
        return None
    try:
        measured = (
            f"false-match rate about {track['fmr_at_threshold']:.1e} at the threshold "
            f"({track['track_images']} infrared images vs {track['centroid_images']}-image visible "
            f"centroids, simulated)"
        )
    except (KeyError, TypeError, ValueError):  # not ours
        return None
    suggested = card.track_mean_threshold
    if suggested is None:
        return f"{measured}; too few comparisons to resolve {card.match_threshold_fmr}"
    return f"{measured}; {suggested:.4f} gives {card.match_threshold_fmr}, the stream pipeline's default"


def _optional_lines(card: ModelCard) -> list[tuple[str, str]]:
    """The card's fields that only some artifacts carry (architecture, engine, calibration, sources)."""
    config = dict(card.model_config)
    lines = []
    if config.get("backbone"):
        extras = ", ".join(
            f"{k} {config[k]}" for k in ("parts", "specific_stages", "patterns") if config.get(k)
        )
        lines.append(("architecture", f"{config['backbone']}" + (f" ({extras})" if extras else "")))
    if card.opset is not None:
        lines.append(("opset", str(card.opset)))
    if card.profile is not None:
        lines.append(
            ("batch profile", f"min {card.profile.min}, opt {card.profile.opt}, max {card.profile.max}")
        )
    if card.tensorrt_version:
        gpu = f"{card.gpu_name or '?'} (compute capability {card.compute_capability or '?'})"
        lines.append(("tensorrt", f"{card.tensorrt_version}, built for {gpu}"))
    if card.calibration:
        cal = dict(card.calibration)
        visible = 100 * float(cal.get("visible_fraction", 0))
        kept = len(cal.get("kept_float") or ())
        lines.append(
            (
                "int8 calib.",
                f"{cal.get('method')}, {cal.get('images')} {cal.get('split')} images, "
                f"{visible:.0f}% visible / {100 - visible:.0f}% infrared, {kept} nodes kept in float",
            )
        )
    if card.match_threshold_data:
        lines.append(
            (
                "threshold data",
                ", ".join(
                    f"{k} {v}"
                    for k, v in dict(card.match_threshold_data).items()
                    if k not in ("within", "track_means")
                ),
            )
        )
    if card.source_checkpoint_sha256:
        lines.append(("checkpoint", f"sha256 {card.source_checkpoint_sha256[:16]}…"))
    if card.engine_sha256:
        lines.append(("engine", f"sha256 {card.engine_sha256[:16]}…"))
    return lines
