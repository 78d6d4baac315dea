"""Model cards and the Hugging Face Hub (the library side of ``faceage push MODEL_DIR --repo-id USER/NAME``).

A model directory (:meth:`AgeModel.save_pretrained`: ``config.json`` + ``model.safetensors``, maybe
``model.onnx``) gets a ``README.md`` model card with Hub metadata, built from its config (and the text of an
existing ``MODEL_CARD.md``), and is uploaded with ``huggingface_hub``. Every failure of the upload (no network,
offline mode, no token, no permission) becomes a one-line :class:`PushError` message.

Downloads (:func:`load_from_hub`, pretrained backbone weights through :func:`hub_downloads`) first check in
:data:`PROBE_TIMEOUT_S` that the Hub can be reached; offline they use the cache, or fail at once with one line that
names the weights and how to provide them, instead of retrying for a minute.

    >>> write_model_card("runs/x/model")           # README.md + MODEL_CARD.md
    >>> push_to_hub("runs/x/model", "me/faceage-resnet18")
    >>> model = load_from_hub("me/faceage-resnet18")
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from faceage.models.files import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME, read_directory_config

CARD_NAME = "README.md"  # what the Hub renders
MODEL_CARD_NAME = "MODEL_CARD.md"  # the package's own name for the card (the bundled model has one)
UPLOAD_PATTERNS = [CONFIG_NAME, WEIGHTS_NAME, ONNX_NAME, CARD_NAME, MODEL_CARD_NAME, "*.png"]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


PROBE_TIMEOUT_S = 1.5  # a host that does not accept a connection within this is taken as unreachable


class PushError(RuntimeError):
    """The upload failed; ``str()`` is a one-line reason."""


class WeightsUnavailable(ValueError):
    """Pretrained weights are neither cached nor downloadable here; ``str()`` is one line naming them and how to
    provide them."""


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``url``'s host (or the HTTPS proxy, when one is set) accepts a TCP connection within ``timeout``
    seconds. The name lookup runs in a helper thread, so a resolver that hangs cannot hold the caller longer."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or os.environ.get("ALL_PROXY") or os.environ.get("all_proxy")
    parts = urlsplit(proxy if proxy and "://" in proxy else f"http://{proxy}" if proxy else url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, name="faceage-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def _offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)  # what every Hub request checks (constants.is_offline_mode() where it exists)


def hub_offline() -> bool:
    """Whether downloads from the Hugging Face Hub are off: ``HF_HUB_OFFLINE=1``, or its host cannot be reached."""
    from huggingface_hub import constants

    return _offline_mode() or not reachable(constants.ENDPOINT)


@contextlib.contextmanager
def hub_downloads(what: str, repo_id: str | None, hint: str = "") -> Iterator[bool]:
    """Runs a block that may download ``what`` from the Hub repository ``repo_id``; yields whether the Hub is online.

    With the Hub online the block runs as it always did. Offline (``HF_HUB_OFFLINE=1``, or no connection to its host
    within :data:`PROBE_TIMEOUT_S`) it runs in huggingface_hub's offline mode: weights already in the cache load at
    once, and missing ones fail at once instead of after a minute of retries, as one :class:`WeightsUnavailable`
    line naming ``what`` and how to provide it (``hint``: one more way, e.g. a config switch).
    """
    from huggingface_hub import constants

    online = not hub_offline()
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or not online  # read by every Hub request
    try:
        yield online
    except OSError as e:  # offline: LocalEntryNotFoundError / OfflineModeIsEnabled, i.e. "not in the cache"
        if online:
            raise
        source = f"{repo_id} on the Hugging Face Hub" if repo_id else "the Hugging Face Hub"
        fetch = f"`hf download {repo_id}`" if repo_id else "a download"
        why = "HF_HUB_OFFLINE=1" if before else f"{urlsplit(constants.ENDPOINT).hostname} cannot be reached"
        raise WeightsUnavailable(
            f"{what} ({source}) are not in the Hugging Face cache {constants.HF_HUB_CACHE} and the Hub is offline ({why}): "
            f"run {fetch} where the Hub is reachable and copy that cache here (or set HF_HUB_CACHE to a copy){hint}"
        ) from e
    finally:
        constants.HF_HUB_OFFLINE = before


@contextlib.contextmanager
def url_downloads(what: str, url: str, cache_dir: str | Path, hint: str = "") -> Iterator[None]:
    """As :func:`hub_downloads` for a file that is downloaded from ``url`` into ``cache_dir`` (torch.hub): when the
    file is not there and its host cannot be reached, one :class:`WeightsUnavailable` line at once."""
    target = Path(cache_dir) / Path(urlsplit(url).path).name
    if not target.is_file() and not reachable(url):
        raise WeightsUnavailable(f"{what} ({url}) are not in {cache_dir} and {urlsplit(url).hostname} cannot be reached: "
                                 f"download that file where it can be and put it in {cache_dir}{hint}")
    yield


def _read_config(model_dir: Path) -> dict[str, Any]:
    return read_directory_config(model_dir)


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def _strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text


def model_card(config: Mapping[str, Any], name: str = "faceage model", license: str = "mit", body: str | None = None,
               repo_id: str | None = None) -> str:
    """Model card text (YAML metadata + markdown) for a model config.

    Args:
        config: the model's ``config.json`` (``AgeModel.config`` plus extras such as ``metrics``).
        name: title.
        license: Hub license id.
        body: markdown to use as the description (e.g. an existing ``MODEL_CARD.md``) instead of the generated one.
        repo_id: Hub id for the usage snippet.

    Returns:
        The card.
    """
    inp = config.get("input", {})
    metrics = _flat(config.get("metrics") or {})
    front = ["---", f"license: {license}", "library_name: faceage", "tags:", "- age-estimation", "- face", "- pytorch",
             "- safetensors", "- faceage"]
    if metrics:
        front.append("metrics:\n- mae")
    front.append("---")
    lines = [*front, "", f"# {name}", ""]
    if body:
        lines += [_strip_front_matter(body).rstrip(), ""]
    else:
        lines += [
            "Facial age estimation model (and gender, where it has a gender head) trained with faceage "
            "(PyTorch Lightning + timm).",
            "",
        ]
    align = inp.get("alignment", {})
    lines += [
        "## Model",
        "",
        "| setting | value |",
        "|---|---|",
        f"| backbone | `{config.get('backbone')}` |",
        f"| age head | `{config.get('head')}` {json.dumps(config.get('head_kwargs') or {})} |",
        f"| ages | {config.get('min_age', 0)}–{config.get('max_age', 110)} |",
        f"| gender head | {'yes' if config.get('gender') else 'no'} |",
        f"| input | {inp.get('image_size')} px, central crop {inp.get('crop', 1.0)}, mean {inp.get('mean')}, std {inp.get('std')} |",
        f"| alignment | {align.get('method', '?')}, chip {align.get('chip_size', '?')} px, padding {align.get('padding', '?')} |",
        f"| faceage version | {config.get('faceage_version', '?')} |",
        "",
    ]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" for k, v in metrics.items()]
        lines.append("")
    source = repo_id or "USER/NAME"
    lines += [
        "## Usage",
        "",
        "```python",
        "from faceage.models.hub import load_from_hub",
        "from faceage.inference.predictor import Predictor",
        "",
        f'predictor = Predictor(load_from_hub("{source}"))',
        'for face in predictor.predict("photo.jpg"):',
        "    print(face.box, face.age, face.interval, face.gender)",
        "```",
        "",
        "Input photos are face-detected and aligned like the training chips (dlib); pass `detect=False` for "
        "chips that are already aligned.",
        "",
        "## Limitations",
        "",
        "- Estimates are statistical guesses with errors of several years, larger for the very young and the old; "
        "the 90% interval shows the spread. Do not use them for decisions about individuals (age verification, "
        "employment, law enforcement).",
        "- Accuracy differs between age bands, genders and ethnic groups of the training data; check "
        "`faceage report` on data like yours before use.",
        "- Gender is a binary apparent-gender label of the training data, not a person's identity.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, name: str | None = None, license: str = "mit", repo_id: str | None = None,
                     overwrite: bool = False) -> Path:
    """Writes ``README.md`` (Hub card) and, when missing, ``MODEL_CARD.md`` into a model directory.

    An existing ``MODEL_CARD.md`` becomes the card's description; an existing ``README.md`` is kept unless
    ``overwrite``.

    Args:
        model_dir: a ``save_pretrained`` directory.
        name: card title (default: the directory name).
        license: Hub license id.
        repo_id: Hub id for the usage snippet.
        overwrite: replace an existing ``README.md``.

    Returns:
        The ``README.md`` path.

    Raises:
        FileNotFoundError: when the directory is not a saved model.
    """
    directory = Path(model_dir)
    config = _read_config(directory)
    readme = directory / CARD_NAME
    if readme.exists() and not overwrite:
        return readme
    existing = directory / MODEL_CARD_NAME
    body = existing.read_text(encoding="utf-8") if existing.is_file() else None
    text = model_card(config, name or directory.resolve().name, license, body, repo_id)
    readme.write_text(text, encoding="utf-8")
    if not existing.exists():
        existing.write_text(text, encoding="utf-8")
    return readme


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it looks like a Hub model id ``USER/NAME``.

    Raises:
        ValueError: for a malformed id.
    """
    if not _REPO_ID.fullmatch(repo_id):
        raise ValueError(f"repo id must look like USER/NAME, got {repo_id!r}")
    return repo_id


def push_to_hub(model_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload faceage model", license: str = "mit") -> str:
    """Uploads a model directory (config, weights, ONNX graph if any, model card) to a Hub model repository.

    Args:
        model_dir: a ``save_pretrained`` directory.
        repo_id: ``USER/NAME`` (created if missing).
        private: create the repository private.
        token: Hub token (default: the logged-in one / ``HF_TOKEN``).
        commit_message: commit message.
        license: license id for a generated card.

    Returns:
        The repository URL.

    Raises:
        FileNotFoundError: when the directory is not a saved model.
        ValueError: for a malformed ``repo_id``.
        PushError: when the Hub cannot be reached or refuses (one-line message).
    """
    check_repo_id(repo_id)
    directory = Path(model_dir)
    write_model_card(directory, repo_id.split("/")[1], license, repo_id)
    try:
        from huggingface_hub import HfApi, constants

        if not _offline_mode() and not reachable(constants.ENDPOINT):  # at once, not after retries
            raise PushError(f"cannot push: the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached")

        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(directory), allow_patterns=UPLOAD_PATTERNS,
                          commit_message=commit_message, repo_type="model")
    except ImportError as e:
        raise PushError(f"huggingface_hub is not installed ({e})") from None
    except PushError:
        raise
    except Exception as e:  # noqa: BLE001 - network, auth, offline mode, HTTP errors: all one-line messages
        kind = type(e).__name__
        if kind == "OfflineModeIsEnabled":
            raise PushError("cannot push: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1)") from None
        if kind == "LocalTokenNotFoundError":
            raise PushError("cannot push: not logged in to the Hugging Face Hub (run `hf auth login` or set HF_TOKEN)") from None
        raise PushError(f"cannot push to the Hugging Face Hub: {kind}: {_one_line(e)}") from None
    return str(url)


def load_from_hub(repo_id: str, revision: str | None = None) -> Path:
    """Downloads a faceage model repository (config, safetensors, ONNX, card) and returns its local directory,
    usable as ``Predictor(path)`` / ``load_model(path)``.

    Raises:
        PushError: when it cannot be downloaded (one-line message).
    """
    try:
        from huggingface_hub import snapshot_download

        with hub_downloads(f"the faceage model {repo_id}", repo_id):  # offline: the cached copy, or one line at once
            path = snapshot_download(repo_id, revision=revision, allow_patterns=UPLOAD_PATTERNS)
    except WeightsUnavailable as e:
        raise PushError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - same one-line policy as uploads
        raise PushError(f"cannot download {repo_id} from the Hugging Face Hub: {type(e).__name__}: {_one_line(e)}") from None
    return Path(path)
