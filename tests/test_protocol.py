import pytest

from bench.errors import BenchError
from bench.protocol import CellConfig, parse_metric_id, protocol_group, resolve, resolve_metric
from bench.artifacts import stable_hash
from bench.registry import Registry


@pytest.fixture(scope="module")
def reg():
    return Registry()


def test_resolve_fills_profile_defaults_and_canonical_names(reg):
    cfg = CellConfig.build({"defense": "advdm", "attack": "db", "purifier": "jpeg"})
    proto = resolve(cfg, reg)
    assert proto["attack"]["name"] == "dreambooth"  # alias resolved
    assert proto["defense"]["params"]["eps"] == 16.0 and proto["defense"]["params"]["steps"] == 20  # tiny preset
    assert proto["purifier"][0]["params"]["quality"] == 75
    paper = resolve(CellConfig.build({"defense": "advdm", "profile": "paper"}), reg)
    assert paper["defense"]["params"]["steps"] == 100 and paper["resolution"] == 512


def test_hash_is_stable_and_sensitive(reg):
    a = resolve(CellConfig.build({"defense": "advdm"}), reg)
    b = resolve(CellConfig.build({"defense": {"name": "advdm", "params": {"eps": 16}}}), reg)
    assert stable_hash(a) == stable_hash(b)  # explicit default == implicit default
    c = resolve(CellConfig.build({"defense": "advdm"}, ["defense.eps=8"]), reg)
    assert stable_hash(a) != stable_hash(c)
    d = resolve(CellConfig.build({"defense": "advdm", "seed": 1}), reg)
    assert stable_hash(a) != stable_hash(d)
    # the protocol group ignores defense/purifier/attack but not the profile's protocol
    assert protocol_group(a) == protocol_group(c)
    e = resolve(CellConfig.build({"defense": "advdm"}, ["generation.steps=3"]), reg)
    assert protocol_group(a) != protocol_group(e)


def test_overrides_cover_every_section(reg):
    cfg = CellConfig.build({"purifier": "jpeg+none"}, [
        "defense.name=advdm", "defense.eps=8", "attack.steps=3", "purifier.jpeg.quality=50",
        "generation.prompts=[a photo of sks person]", "seed=3", "dataset.identity=x", "base_model.path=/tmp/m",
        "metrics=ism[dlib],fdfr[dlib]",
    ])
    assert cfg.defense.name == "advdm" and cfg.defense.params == {"eps": 8}
    assert cfg.purifier[0].params == {"quality": 50} and cfg.attack.params == {"steps": 3}
    assert cfg.seed == 3 and cfg.dataset.identity == "x" and cfg.base_model.path == "/tmp/m"
    assert cfg.metrics == ["ism[dlib]", "fdfr[dlib]"] and cfg.generation.prompts == ["a photo of sks person"]


@pytest.mark.parametrize("item, msg", [
    ("defense", "expected key=value"),
    ("nonsense.x=1", "unknown key"),
    ("purifier.quality=5", "chain has 2 links"),
    ("purifier.gridpure.t=5", "no purifier link"),
    ("generation.steps=0", "greater than 0"),
])
def test_bad_overrides_are_one_line_errors(item, msg):
    with pytest.raises(BenchError, match=msg) as exc:
        CellConfig.build({"purifier": "jpeg+none"}, [item])
    assert "\n" not in str(exc.value)


def test_bad_parameters_are_rejected_before_compute(reg):
    for item, msg in [("defense.eps=-1", "must be > 0"), ("defense.steps=0", "must be >= 1"),
                      ("defense.epss=3", "did you mean 'eps'"), ("defense.steps=abc", "expected int")]:
        with pytest.raises(BenchError, match=msg):
            resolve(CellConfig.build({"defense": "advdm"}, [item]), reg)


def test_yaml_round_trip(tmp_path, reg):
    cfg = CellConfig.build({"defense": "advdm", "purifier": "jpeg"}, ["defense.eps=8"])
    path = tmp_path / "cell.yaml"
    path.write_text(cfg.to_yaml())
    again = CellConfig.from_yaml(path)
    assert stable_hash(resolve(again, reg)) == stable_hash(resolve(cfg, reg))
    (tmp_path / "bad.yaml").write_text("defense: [unclosed")
    with pytest.raises(BenchError, match="cannot read config"):
        CellConfig.from_yaml(tmp_path / "bad.yaml")


def test_metric_ids_name_their_backend():
    assert parse_metric_id("ism[dlib]") == ("ism", {"backend": "dlib"})
    assert parse_metric_id("fid[dlib-face,pooling=pooled]") == ("fid", {"backend": "dlib-face", "pooling": "pooled"})
    for bad in ("fid[dlib-face", "fid[dlib-face,pooled]", "fid[,pooling=pooled,x]"):
        with pytest.raises(BenchError, match="metric 'fid"):
            parse_metric_id(bad)
    cfg = CellConfig.build({}, ["metrics=fdfr[dlib],fid[dlib-face,pooling=pooled],fid[dlib-face]"])
    assert cfg.metrics == ["fdfr[dlib]", "fid[dlib-face,pooling=pooled]", "fid[dlib-face]"]  # commas inside [] stay
    ids = [resolve_metric(m, Registry(), "tiny")["id"] for m in cfg.metrics]
    assert ids == ["fdfr[dlib]", "fid[dlib-face,pooling=pooled]", "fid[dlib-face]"]  # pooling named only off its default
    assert parse_metric_id("psnr") == ("psnr", {})
