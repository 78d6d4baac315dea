"""``faceage push``: write a model card and upload a saved model directory to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys

from faceage.models.hub import PushError, check_repo_id, push_to_hub, write_model_card


def main(argv: list[str] | None = None) -> int:
    """``faceage push``. Exit status 0 uploaded (or card written with ``--card-only``), 1 upload failed, 2 bad input."""
    p = argparse.ArgumentParser(prog="faceage push", description="Write a model card and upload a saved model to the Hugging Face Hub.")
    p.add_argument("model_dir", help="directory written by save_pretrained (config.json + model.safetensors)")
    p.add_argument("--repo-id", required=True, help="USER/NAME of the Hub model repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--token", default=None, help="Hub token (default: logged-in token or HF_TOKEN)")
    p.add_argument("--license", default="mit", help="license id for the model card")
    p.add_argument("--message", default="Upload faceage model", help="commit message")
    p.add_argument("--card-only", action="store_true", help="only write README.md / MODEL_CARD.md, do not upload")
    args = p.parse_args(argv)
    try:
        if args.card_only:
            check_repo_id(args.repo_id)
            print(f"wrote {write_model_card(args.model_dir, args.repo_id.split('/')[1], args.license, args.repo_id)}")
            return 0
        url = push_to_hub(args.model_dir, args.repo_id, args.private, args.token, args.message, args.license)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PushError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"pushed {args.model_dir} to {url}")
    return 0

