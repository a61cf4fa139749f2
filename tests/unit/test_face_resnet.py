"""dlib's face ResNet in PyTorch: parity with dlib on real faces, the .dat parser, weight provenance.

The parity reference is dlib itself (``dlib-bin``): chips aligned by dlib's detector, 5-point shape
predictor and ``get_face_chip``, described by ``face_recognition_model_v1.compute_face_descriptor``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from twinstream.config import load_settings
from twinstream.model.dlib_format import Conv, DlibFormatError, LayerKind, parse_metric_network
from twinstream.model.dlib_stream import DlibReader
from twinstream.model.face_resnet import (
    FaceResNet,
    assign_dlib_weights,
    face_resnet_layout,
    load_face_resnet,
    normalize_chips,
)
from twinstream.model.provenance import (
    FACE_RESNET_FILE,
    SHAPE_PREDICTOR_5_FILE,
    packaged_model_path,
    weights_provenance,
)

#: AT&T subjects and image numbers: 24 people with a detected face, and three frames where dlib's
#: detector finds none (the whole frame is then the box, as the face pipeline does).
_DETECTED = [(person, 1) for person in range(1, 13)]
_UNDETECTED = [(33, 2), (35, 2), (37, 2)]


def _model_file(name: str) -> Path:
    try:
        return packaged_model_path(name)
    except FileNotFoundError as exc:
        pytest.skip(f"pretrained dlib model unavailable: {exc}")


@pytest.fixture(scope="module")
def resnet_path() -> Path:
    return _model_file(FACE_RESNET_FILE)


@pytest.fixture(scope="module")
def resnet_bytes(resnet_path: Path) -> bytes:
    return resnet_path.read_bytes()


@pytest.fixture(scope="module")
def model(resnet_path: Path) -> FaceResNet:
    return load_face_resnet(resnet_path)


@pytest.fixture(scope="module")
def dlib() -> ModuleType:
    try:
        import dlib as module
    except ImportError as exc:
        pytest.skip(f"dlib is not importable ({exc}); install dlib-bin>=20.0 to run the parity test")
    return module


@pytest.fixture(scope="module")
def dlib_chips(dlib: ModuleType) -> tuple[np.ndarray, np.ndarray]:
    """(chips (N, 150, 150, 3) uint8, dlib's descriptors (N, 128)) for AT&T faces."""
    from PIL import Image

    faces = load_settings().datasets_dir / "att_faces"
    if not faces.is_dir():
        pytest.skip(f"AT&T faces not found at {faces} (set TWINSTREAM_DATA_DIR)")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(_model_file(SHAPE_PREDICTOR_5_FILE)))
    recognizer = dlib.face_recognition_model_v1(str(_model_file(FACE_RESNET_FILE)))
    chips, descriptors = [], []
    for person, image in _DETECTED + _UNDETECTED:
        with Image.open(faces / f"s{person}" / f"{image}.pgm") as pgm:
            rgb = np.asarray(pgm.convert("RGB"))
        found = detector(rgb, 1)
        box = (
            max(found, key=lambda r: r.area())
            if found
            else dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
        )
        assert bool(found) == ((person, image) in _DETECTED), f"s{person}/{image}.pgm: detection changed"
        chip = dlib.get_face_chip(rgb, predictor(rgb, box), size=150, padding=0.25)
        chips.append(chip)
        descriptors.append(np.asarray(recognizer.compute_face_descriptor(chip)))
    return np.stack(chips), np.stack(descriptors)


def test_raw_descriptors_match_dlib_on_aligned_att_faces(
    model: FaceResNet, dlib_chips: tuple[np.ndarray, np.ndarray]
) -> None:
    chips, expected = dlib_chips
    with torch.no_grad():
        got = model.embed_chips(chips, raw=True).double().numpy()
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    max_abs = float(np.abs(got - expected).max())
    print(f"\nparity on {len(chips)} chips: min cosine {cosine.min():.15f}, max |diff| {max_abs:.3g}")
    assert cosine.min() >= 0.9999, f"cosines {np.round(cosine, 6)}"
    assert max_abs < 1e-4


def _random_chips(count: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (count, 150, 150, 3), dtype=np.uint8)


def test_output_is_unit_length_and_the_raw_descriptor_rescaled(model: FaceResNet) -> None:
    x = normalize_chips(_random_chips(6))
    with torch.no_grad():
        unit, raw = model(x), model(x, raw=True)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(unit, raw / raw.norm(dim=1, keepdim=True))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(6), atol=1e-2)  # dlib's own are not unit


def test_descriptors_do_not_depend_on_the_batch(model: FaceResNet) -> None:
    x = normalize_chips(_random_chips(12))
    with torch.no_grad():
        batched = model(x, raw=True)
        alone = torch.cat([model(x[i : i + 1], raw=True) for i in range(4)])
        reversed_batch = model(x.flip(0), raw=True).flip(0)
    torch.testing.assert_close(alone, batched[:4], atol=1e-5, rtol=0)
    torch.testing.assert_close(reversed_batch, batched, atol=1e-5, rtol=0)


def test_contiguous_and_channels_last_models_agree(resnet_path: Path, model: FaceResNet) -> None:
    x = normalize_chips(_random_chips(3))
    with torch.no_grad():
        torch.testing.assert_close(
            load_face_resnet(resnet_path, channels_last=False)(x), model(x), atol=1e-5, rtol=0
        )


def test_the_model_refuses_chips_of_another_size(model: FaceResNet) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, 150, 150\)"):
        model(torch.zeros(1, 3, 112, 92))
    with pytest.raises(ValueError, match="uint8 RGB"):
        normalize_chips(np.zeros((1, 150, 150), np.uint8))


def test_the_input_layer_means_come_from_the_file(resnet_bytes: bytes, model: FaceResNet) -> None:
    network = parse_metric_network(resnet_bytes, face_resnet_layout())
    assert network.input.rows == network.input.cols == 150
    np.testing.assert_allclose(network.input.means, (122.782, 117.001, 104.298), atol=1e-4)
    torch.testing.assert_close(model.input_mean, torch.tensor(network.input.means, dtype=torch.float32))
    assert len(network.layers) == len(face_resnet_layout())
    assert sum(isinstance(layer, Conv) for layer in network.layers) == 29


@pytest.mark.parametrize("keep", [0, 1, 7, 1000, 11_000_000, -1])
def test_a_truncated_file_is_refused_with_the_offset(resnet_bytes: bytes, keep: int) -> None:
    data = resnet_bytes[:keep]
    with pytest.raises(DlibFormatError, match=rf"at byte \d+ of {len(data)}: truncated"):
        parse_metric_network(data, face_resnet_layout())


def test_foreign_and_overlong_files_are_refused(resnet_bytes: bytes) -> None:
    layout = face_resnet_layout()
    with pytest.raises(DlibFormatError):
        parse_metric_network(_model_file(SHAPE_PREDICTOR_5_FILE).read_bytes(), layout)
    with pytest.raises(DlibFormatError, match="integer control byte"):
        parse_metric_network(b"\x89PNG\r\n\x1a\n" + bytes(64), layout)
    with pytest.raises(DlibFormatError, match="3 unexpected bytes after the network"):
        parse_metric_network(resnet_bytes + b"abc", layout)
    with pytest.raises(DlibFormatError, match="add_skip_layer version 2"):
        parse_metric_network(resnet_bytes, layout[:-1])  # another network: the wrappers differ
    with pytest.raises(DlibFormatError, match=r"expected a con layer .* found 'fc_2'"):
        parse_metric_network(resnet_bytes, (*layout[:-1], LayerKind.CON))


def test_weights_that_do_not_fit_the_model_are_refused_and_nothing_is_assigned(resnet_bytes: bytes) -> None:
    network = parse_metric_network(resnet_bytes, face_resnet_layout())
    layers = list(network.layers)
    first_conv = next(i for i, layer in enumerate(layers) if isinstance(layer, Conv))
    conv = layers[first_conv]
    assert isinstance(conv, Conv)
    before = FaceResNet()
    snapshot = {k: v.clone() for k, v in before.state_dict().items()}
    layers[first_conv] = dataclasses.replace(conv, weight=conv.weight[:, :2])
    with pytest.raises(DlibFormatError, match="shapes differ"):
        assign_dlib_weights(before, dataclasses.replace(network, layers=tuple(layers)))
    layers[first_conv] = dataclasses.replace(conv, padding=(3, 3))
    with pytest.raises(DlibFormatError, match="stem_conv"):
        assign_dlib_weights(before, dataclasses.replace(network, layers=tuple(layers)))
    assert all(torch.equal(v, snapshot[k]) for k, v in before.state_dict().items())


@pytest.mark.parametrize(
    ("data", "read", "expected"),
    [
        (b"\x01\x00", "int_", 0),
        (b"\x81\x05", "int_", -5),
        (b"\x02\x00\x01", "int_", 256),
        (b"\x03\x0a\xd7\xa3\x81\x1c", "float_", float(np.float32(0.04))),  # 0xa3d70a * 2**-28
        (b"\x01\x00\x02\x00\x7d", "float_", float("inf")),  # exponent 32000
        (b"\x01\x0dloss_metric_2", "string", "loss_metric_2"),
        (b"1", "bool_", True),
    ],
)
def test_dlib_primitives_decode_as_dlib_writes_them(data: bytes, read: str, expected: Any) -> None:
    reader = DlibReader(data)
    assert getattr(reader, read)("value") == expected
    assert reader.remaining == 0


def test_a_negative_length_is_refused() -> None:
    with pytest.raises(DlibFormatError, match="unsigned"):
        DlibReader(b"\x81\x05abcde").string("name")


def test_provenance_records_hash_package_and_the_published_licence_statements(resnet_path: Path) -> None:
    for path in (resnet_path, _model_file(SHAPE_PREDICTOR_5_FILE)):
        record = weights_provenance(path)
        assert record["file"] == path.name
        assert record["size_bytes"] == path.stat().st_size
        assert record["sha256_matches_verified"] is True
        package = record["package"]
        assert package["version"] == importlib.metadata.version("face-recognition-models")
        assert package["record_sha256_matches"] is True
        assert package["license_files"] == {"LICENSE": "CC0 1.0 Universal"}
        statements = record["upstream"]["statements"]
        assert any("released them into the public domain" in s["text"] for s in statements)
        assert all(s["source"] for s in statements)
