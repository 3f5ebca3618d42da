"""`lt models`: every registered backbone with its size and input length."""

from __future__ import annotations

from lightning_tagging.errors import UserError
from lightning_tagging.frontends import LogMel, Waveform
from lightning_tagging.models import BACKBONES

REFERENCE_N_TAGS = 50  # parameter counts are quoted at 50 tags, as in the papers


def backbone_rows(n_tags: int = REFERENCE_N_TAGS) -> list[dict[str, object]]:
    """One row per registered backbone: name, class, trainable parameters, input length."""
    rows = []
    for name, cls in BACKBONES.items():
        model = cls(n_tags=n_tags)
        frontend = Waveform() if model.input_kind == "waveform" else LogMel()
        unit = "samples" if model.input_kind == "waveform" else "frames"
        crop = frontend.n_samples_for(model.input_length)
        rows.append(
            {
                "name": name,
                "class": f"{cls.__module__}.{cls.__name__}",
                "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "input": f"{model.input_length} {unit}",
                "crop_seconds": crop / frontend.sample_rate,
            }
        )
    return rows


def print_backbone_table() -> None:
    """Print `backbone_rows` as an aligned table."""
    rows = backbone_rows()
    header = f"{'name':<14}{'parameters':>12}  {'input (patch)':<24}class"
    print(f"backbones (parameters at {REFERENCE_N_TAGS} tags)")
    print(header)
    for row in rows:
        patch = f"{row['input']} ({row['crop_seconds']:.2f} s)"
        print(f"{row['name']:<14}{row['parameters']:>12,}  {patch:<24}{row['class']}")


def main(argv: list[str]) -> int:
    """`lt models`."""
    if argv:
        raise UserError(f"`lt models` takes no arguments, got {' '.join(argv)}")
    print_backbone_table()
    return 0
