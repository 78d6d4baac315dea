"""`make demo`: the bundled model on a real photo that a PyPI package ships (scikit-image's astronaut), then on a few
faces of the shared UTKFace data when present. Prints the faces and ages and where the files went."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def faceage(*args: str) -> int:
    cmd = [str(Path(sys.executable).parent / "faceage"), *args]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/utkface")
    parser.add_argument("--out", default="demo_output")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from skimage import data

    from PIL import Image

    photo = out / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=95)
    code = faceage("predict", str(photo), "--output", str(out / "astronaut.csv"), "--annotate", str(out / "annotated"))
    print((out / "astronaut.csv").read_text())
    print(f"annotated image: {out / 'annotated' / 'astronaut.jpg'}")

    data_dir = Path(args.data)
    if data_dir.is_dir():
        faces = sorted(data_dir.glob("*.jpg"))[:: max(1, len(list(data_dir.glob("*.jpg"))) // 8)][:8]
        code |= faceage("predict", *map(str, faces), "--no-detect", "--output", str(out / "utkface_sample.csv"), "--annotate", str(out / "annotated"))
        print("true age (from the file name) vs predicted:")
        import csv

        for row in csv.DictReader((out / "utkface_sample.csv").open()):
            print(f"  {Path(row['file']).name.split('_')[0]:>3} -> {row['age']:>5}  ({row['age_low']}-{row['age_high']}, {row['gender']})")
    else:
        print(f"{data_dir} not found: skipping the UTKFace sample (the astronaut ran).")
    print(f"outputs in {out.resolve()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
