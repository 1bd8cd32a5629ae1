"""Write held-out digits as small PNGs (dark ink on white, 32×32) for the README's curl lines.

python examples/digits/make_samples.py OUTPUT_DIR   # writes seven.png and three.png
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import dataset  # same split as training: never-trained images

SAMPLES = {"seven.png": 7, "three.png": 3}


def render(image: np.ndarray) -> Image.Image:
    ink = np.clip(image[0], 0.0, 1.0)
    pixels = (255 - ink * 255).astype(np.uint8)
    return Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    _, x_test, _, y_test = dataset()
    for name, digit in SAMPLES.items():
        first = int(np.flatnonzero(y_test == digit)[0])
        render(x_test[first]).save(out / name, optimize=True)
        print(f"wrote {out / name} (held-out image #{first}, a {digit})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
