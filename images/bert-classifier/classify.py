"""Fine-tune a BERT classifier on the labels shipped in the image (a starting point)."""
import json
import sys

LABELS = json.load(open("/opt/bert/data/labels.json"))


def main() -> int:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"labels: {', '.join(LABELS)}; device: {device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
