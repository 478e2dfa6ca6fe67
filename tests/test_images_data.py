import numpy as np
import pytest
from PIL import Image

from bench import data
from bench.errors import BenchError
from bench.images import center_crop_resize, linf, list_images, load_image, quantize_perturbed


def _save(tmp_path, name, img, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_odd_modes_load_as_rgb8(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    cases = {
        "cmyk.jpg": (base.convert("CMYK"), {"format": "JPEG"}),
        "rgba.png": (base.convert("RGBA"), {}),
        "grey.png": (base.convert("L"), {}),
        "palette.png": (base.convert("P"), {}),
        "sixteen.png": (Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), {}),
    }
    for name, (img, kw) in cases.items():
        arr = load_image(_save(tmp_path, name, img, **kw))
        assert arr.dtype == np.uint8 and arr.shape == (20, 30, 3), name
    sixteen = load_image(tmp_path / "sixteen.png")
    assert np.array_equal(sixteen[..., 0], rgb[..., 0])  # 16-bit rescaled exactly to 8-bit


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((10, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    p = tmp_path / "rot.jpg"
    img.save(p, format="JPEG", exif=exif.tobytes())
    assert load_image(p).shape == (40, 10, 3)


def test_unreadable_and_empty_inputs_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(BenchError, match="unreadable image"):
        load_image(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no images found"):
        list_images(tmp_path / "empty")


def test_antidb_layout_on_shared_faces(faces):
    card = data.load_card("anti-db")
    assert "n000050" in data.identities(card, str(faces))
    raw = data.load_raw(card, str(faces), "n000050")
    assert len(raw.roles["train"]) == 4 and len(raw.roles["surrogate"]) == 4 and len(raw.roles["reference"]) == 12
    assert raw.names["train"][0].startswith("set_B_")
    subject = data.make_subject(raw, 64)
    assert subject.train[0].shape == (64, 64, 3)


def test_flat_layout_on_shared_faces(faces):
    card = data.load_card("celebahq-flat")
    raw = data.load_raw(card, str(faces), "rid_103")
    assert len(raw.roles["surrogate"]) == 4 and len(raw.roles["train"]) == 4 and len(raw.roles["reference"]) == 12
    assert set(raw.names["train"]).isdisjoint(raw.names["surrogate"])


def test_sample_card_works_offline():
    card = data.load_card("sample")
    raw = data.load_raw(card, None, None)
    assert raw.identity == "synth-000" and len(raw.roles["reference"]) == 12
    assert raw.fingerprint == data.load_raw(card, None, None).fingerprint  # deterministic


def test_hf_datasets_source(tmp_path, faces):
    import datasets  # installed by the test extras
    files = sorted((faces / "rid_103").glob("*.jpg"))[:6]
    ds = datasets.Dataset.from_dict({"image": [Image.open(f) for f in files], "identity": ["p1"] * 3 + ["p2"] * 3},
                                    features=datasets.Features({"image": datasets.Image(), "identity": datasets.Value("string")}))
    ds.save_to_disk(tmp_path / "ds")
    card = data.load_card("hf-identities")
    raw = data.load_raw(card, str(tmp_path / "ds"), "p2")
    assert len(raw.roles["reference"]) == 3 and raw.roles["train"][0].shape == (512, 512, 3)
    with pytest.raises(BenchError, match="no rows"):
        data.load_raw(card, str(tmp_path / "ds"), "nobody")


def test_unknown_card_and_missing_identity(faces):
    with pytest.raises(BenchError, match="did you mean 'anti-db'"):
        data.load_card("anti_db")
    with pytest.raises(BenchError, match="not found"):
        data.load_raw(data.load_card("anti-db"), str(faces), "n999999")


def test_quantize_respects_integer_budget():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    adv = clean / 255.0 + rng.uniform(-7 / 255, 7 / 255, clean.shape)
    out = quantize_perturbed(clean, adv, 6.4)
    assert linf(out, clean) == 6


def test_center_crop_resize():
    img = np.zeros((100, 60, 3), dtype=np.uint8)
    assert center_crop_resize(img, 32).shape == (32, 32, 3)
