"""Where the pretrained dlib weight files come from and what their publishers say about their licence.

The files are taken from the installed PyPI package ``face-recognition-models`` (never downloaded at
run time). `weights_provenance` returns what a model artifact's manifest must record about one of them:
name, sha256, size, the package and version it was installed from (and whether the package's RECORD
vouches for the bytes), the upstream origin, and the licence statements quoted with their sources.

The publishers disagree on paper: the author released the models into the public domain and his
repository carries a CC0 1.0 licence file; the PyPI package ships that CC0 text too, while its metadata
field says "MIT license". All are recorded as published, none is interpreted away.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODELS_PACKAGE = "face_recognition_models"
MODELS_DISTRIBUTION = "face-recognition-models"
FACE_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_PREDICTOR_5_FILE = "shape_predictor_5_face_landmarks.dat"

_DLIB_MODELS = "https://github.com/davisking/dlib-models"
_README_AT = f"{_DLIB_MODELS}/blob/fd81b6308a6a73d4ce08859eb2f4b628a21e27a2/README.md"


@dataclass(frozen=True, slots=True)
class Statement:
    """A licence or origin statement, quoted verbatim, and where it was published."""

    text: str
    source: str


@dataclass(frozen=True, slots=True)
class Upstream:
    """The published origin of one weight file.

    ``verified_sha256`` is the hash of the bytes this project's parity test ran with (both files take
    part: the predictor aligns the chips, the network is compared with dlib's), as installed from
    face-recognition-models 0.3.0. dlib-models publishes no hash of its own.
    """

    model: str
    author: str
    origin: str
    verified_sha256: str
    statements: tuple[Statement, ...]


_PUBLIC_DOMAIN = Statement(
    "As far as I am concerned, anyone can do whatever they want with these model files as I've "
    "released them into the public domain.",
    f"davisking/dlib-models README.md, first paragraph ({_README_AT})",
)
_REPO_LICENCE = Statement(
    "CC0 1.0 Universal",
    f"davisking/dlib-models LICENSE file, first line (in the repository since its initial commit "
    f"0511ba1, 2015-09-21; {_DLIB_MODELS}/blob/fd81b6308a6a73d4ce08859eb2f4b628a21e27a2/LICENSE)",
)
_PACKAGE_README = Statement(
    "These models were created by Davis King and are licensed in the public domain or under CC0 1.0 "
    "Universal. See LICENSE.",
    "face-recognition-models 0.3.0 README.rst, the package's long description on PyPI (rendered: "
    "'Davis King' links to https://github.com/davisking/dlib-models)",
)

_UPSTREAM: dict[str, Upstream] = {
    FACE_RESNET_FILE: Upstream(
        model="dlib_face_recognition_resnet_model_v1 (dlib examples/dnn_face_recognition_ex.cpp)",
        author="Davis King",
        origin=f"{_DLIB_MODELS}/blob/2a61575dd45d818271c085ff8cd747613a48f20d/"
        "dlib_face_recognition_resnet_model_v1.dat.bz2 (added 2017-02-11; also dlib.net/files)",
        verified_sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        statements=(
            _PUBLIC_DOMAIN,
            _REPO_LICENCE,
            _PACKAGE_README,
            Statement(
                "The network was trained from scratch on a dataset of about 3 million faces. This "
                "dataset is derived from a number of datasets.  The face scrub dataset "
                "(http://vintage.winklerbros.net/facescrub.html), the VGG dataset "
                "(http://www.robots.ox.ac.uk/~vgg/data/vgg_face/), and then a large number of images "
                "I scraped from the internet.",
                f"davisking/dlib-models README.md, section dlib_face_recognition_resnet_model_v1 "
                f"({_README_AT}); the training sets' own terms are not stated there",
            ),
        ),
    ),
    SHAPE_PREDICTOR_5_FILE: Upstream(
        model="shape_predictor_5_face_landmarks (dlib 5-point face landmark model)",
        author="Davis King",
        origin=f"{_DLIB_MODELS}/blob/4af9b776281dd7d6e2e30d4a2d40458b1e254e40/"
        "shape_predictor_5_face_landmarks.dat.bz2 (added 2017-09-15; also dlib.net/files)",
        verified_sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
        statements=(
            _PUBLIC_DOMAIN,
            _REPO_LICENCE,
            _PACKAGE_README,
            Statement(
                "It is trained on the dlib 5-point face landmark dataset, which consists of 7198 "
                "faces.  I created this dataset by downloading images from the internet and annotating "
                "them with dlib's imglab tool.",
                f"davisking/dlib-models README.md, section shape_predictor_5_face_landmarks "
                f"({_README_AT}; Markdown link to the dataset removed)",
            ),
        ),
    ),
}


def packaged_model_path(filename: str) -> Path:
    """Path of ``filename`` inside the installed ``face_recognition_models`` package.

    The package is located without importing it: its ``__init__`` imports ``pkg_resources``, which
    recent setuptools no longer provide.

    Raises:
        FileNotFoundError: The package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{MODELS_DISTRIBUTION} is not installed (pip install {MODELS_DISTRIBUTION})")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"{filename} is not in the installed {MODELS_DISTRIBUTION} ({path})")
    return path


def weights_provenance(path: str | Path) -> dict[str, Any]:
    """What a manifest must record about the weight file at ``path`` (JSON-ready).

    Keys: ``file``, ``sha256``, ``size_bytes``, ``package`` (distribution, version, licence metadata
    and LICENSE title as installed, ``record_sha256_matches``; None when the file is not the installed
    package's), ``upstream`` (model, author, origin, the verified sha256 and quoted statements with
    their sources; None for a file this module does not know) and ``sha256_matches_verified`` (the
    file is byte-identical to the one the parity test ran with).
    """
    path = Path(path).resolve()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    upstream = _UPSTREAM.get(path.name)
    return {
        "file": path.name,
        "sha256": sha256,
        "size_bytes": path.stat().st_size,
        "package": _package_record(path, sha256),
        "upstream": asdict(upstream) if upstream else None,
        "sha256_matches_verified": upstream is not None and upstream.verified_sha256 == sha256,
    }


def _package_record(path: Path, sha256: str) -> dict[str, Any] | None:
    """The installed distribution that owns ``path``, as its metadata describes itself."""
    try:
        dist = importlib.metadata.distribution(MODELS_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    entry = next((f for f in dist.files or () if Path(str(dist.locate_file(f))).resolve() == path), None)
    if entry is None:
        return None
    meta = dist.metadata
    licence_files = meta.get_all("License-File") or []
    titles = [_first_line(dist, name) for name in licence_files]
    recorded = entry.hash.value if entry.hash and entry.hash.mode == "sha256" else None
    as_record = base64.urlsafe_b64encode(bytes.fromhex(sha256)).rstrip(b"=").decode()
    return {
        "distribution": meta["Name"],
        "version": dist.version,
        "path_in_package": str(entry),
        "license_metadata": (meta.get_all("License") or [None])[0],
        "license_classifiers": [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")],
        "license_files": dict(zip(licence_files, titles, strict=True)),
        "record_sha256_matches": recorded == as_record,
    }


def _first_line(dist: importlib.metadata.Distribution, name: str) -> str | None:
    # Metadata 2.4 puts licence files under licenses/; older wheels put them next to METADATA.
    for candidate in (f"licenses/{name}", name):
        text = dist.read_text(candidate)
        if text:
            return text.strip().splitlines()[0].strip()
    return None
