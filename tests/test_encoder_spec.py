"""Bring your own encoder: spec files, checks at registration, and instances that use them."""

from __future__ import annotations

import json
import uuid

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.vision.encoder_spec import EncoderSpec, EncoderSpecError
from imagesearch_pg.vision.encoders import OnnxEncoder
from tests.pictures import encode, sample_photos
from tests.small_vectors import register_small_encoder


def mean_colour_model(path):
    """A tiny NHWC model: the mean of each channel, as a 3-d embedding."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["pixels", "axes"], ["colour"], keepdims=0)],
        "mean-colour",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 32, 32, 3])],
        [helper.make_tensor_value_info("colour", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def write_spec(tmp_path, name="mean-colour", **overrides):
    spec = {"name": name, "onnx": "model.onnx", "dim": 3, "output": "colour", "input_size": 32,
            "layout": "NHWC", "channel_order": "BGR", "scale": 1.0, "mean": 0.0, "std": 1.0}
    spec.update(overrides)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_layout_channel_order_and_normalisation_follow_the_spec(tmp_path):
    mean_colour_model(tmp_path / "model.onnx")
    spec = EncoderSpec.from_file(write_spec(tmp_path))
    assert spec.onnx == (tmp_path / "model.onnx").resolve()
    red = np.zeros((100, 100, 3), np.uint8)
    red[..., 0] = 200
    vector = OnnxEncoder(spec, tmp_path).predict([red])[0]
    np.testing.assert_allclose(vector, [0.0, 0.0, 1.0], atol=1e-6)  # BGR: red comes last

    shifted = EncoderSpec.from_file(write_spec(tmp_path, channel_order="RGB", mean=[100, 0, 0], scale=1.0))
    np.testing.assert_allclose(OnnxEncoder(shifted, tmp_path).predict([red])[0], [1.0, 0.0, 0.0], atol=1e-6)


def test_toml_spec(tmp_path):
    mean_colour_model(tmp_path / "model.onnx")
    (tmp_path / "spec.toml").write_text(
        'name = "toml-enc"\nonnx = "model.onnx"\ndim = 3\noutput = "colour"\ninput_size = [32, 32]\n'
        'layout = "NHWC"\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n'
    )
    spec = EncoderSpec.from_file(tmp_path / "spec.toml")
    assert spec.input_size == (32, 32) and spec.scale == pytest.approx(1 / 255) and spec.std == (0.25,) * 3


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"dim": 0}, "dim must be"),
        ({"dim": 2001}, "dim must be"),
        ({"layout": "CHW"}, "layout must be"),
        ({"channel_order": "RGBA"}, "channel_order"),
        ({"std": [1, 0, 1]}, "std must not contain 0"),
        ({"input_size": 8}, "input_size"),
        ({"onnx": "missing.onnx"}, "does not exist"),
        ({"colour": 1}, "unknown spec keys"),
        ({"name": "bad name"}, "name must be"),
    ],
)
def test_bad_specs_are_refused_clearly(tmp_path, overrides, message):
    mean_colour_model(tmp_path / "model.onnx")
    with pytest.raises(EncoderSpecError, match=message):
        EncoderSpec.from_file(write_spec(tmp_path, **overrides))


def test_missing_and_unreadable_spec_files(tmp_path):
    with pytest.raises(EncoderSpecError, match="no encoder spec file"):
        EncoderSpec.from_file(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("name = ")
    with pytest.raises(EncoderSpecError, match="not a readable"):
        EncoderSpec.from_file(tmp_path / "broken.toml")


@pytest.mark.parametrize("overrides,message", [({"dim": 4}, "has 3 values, spec says 4"),
                                               ({"output": "nope"}, "could not run")])
def test_registration_runs_the_model_and_refuses_a_wrong_spec(service, tmp_path, overrides, message):
    mean_colour_model(tmp_path / "model.onnx")
    with pytest.raises(InvalidParameter, match=message):
        service.register_encoder(write_spec(tmp_path, name="wrong-x", **overrides))
    assert "wrong-x" not in [e["name"] for e in service.list_encoders()]


def test_a_registered_onnx_file_serves_an_instance_like_the_builtin_one(service, make_instance, tmp_path):
    """The default encoder's own ONNX file, described by a spec, must give the same search results."""
    builtin = service.encoders.registry.get("efficientnet-lite0")
    # Registered for good: a name of this run, so that a second run on the same database registers anew.
    spec = {"name": f"lite0-copy-{uuid.uuid4().hex[:8]}", "onnx": str(builtin.model_path()), "dim": 1280,
            "output": "features", "input_size": 224, "scale": 1.0, "mean": 127.0, "std": 128.0}
    (tmp_path / "lite0.json").write_text(json.dumps(spec))
    registered = service.register_encoder(tmp_path / "lite0.json")
    assert {"name": registered.name, "dim": 1280} .items() <= next(
        e for e in service.list_encoders() if e["name"] == registered.name).items()
    with pytest.raises(InvalidParameter, match="already registered"):
        service.register_encoder(tmp_path / "lite0.json")

    photos = sample_photos()
    mine, default = make_instance(encoder=registered.name), make_instance(encoder="efficientnet-lite0")
    for key in ("coffee", "rocket", "chelsea"):
        for inst in (mine, default):
            service.add_image(inst.name, key, "p", encode(photos[key]))
    query = encode(photos["rocket"])
    ours = service.search_by_picture(mine.name, query).matches
    theirs = service.search_by_picture(default.name, query).matches
    assert [a.product_id for a in ours] == [a.product_id for a in theirs]
    np.testing.assert_allclose([a.score for a in ours], [a.score for a in theirs], atol=1e-5)
    assert service.describe_instance(mine.name).encoder == registered.name


def test_unknown_encoder_for_an_instance(service):
    with pytest.raises(InvalidParameter, match="not registered; registered: .*efficientnet-lite0"):
        service.create_instance("enc-test", "generic", encoder="no-such-encoder")


def colour_word_text_model(path):
    """A tiny text model: each token id looks up a 3-d vector (in the mean-colour model's BGR space), averaged
    over the tokens that are not padding (attention mask)."""
    table = np.zeros((5, 3), np.float32)  # [PAD], [UNK], red, green, blue
    table[2], table[3], table[4] = [0, 0, 1], [0, 1, 0], [1, 0, 0]
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["vectors"], axis=0),  # N x L x 3
            helper.make_node("Cast", ["mask"], ["weights"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["weights", "last"], ["weights3"]),
            helper.make_node("Mul", ["vectors", "weights3"], ["kept"]),
            helper.make_node("ReduceSum", ["kept", "axis1"], ["summed"], keepdims=0),
        ],
        "colour-words",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "L"]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", "L"])],
        [helper.make_tensor_value_info("summed", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("table", TensorProto.FLOAT, [5, 3], table.flatten().tolist()),
         helper.make_tensor("last", TensorProto.INT64, [1], [2]),
         helper.make_tensor("axis1", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)


def colour_word_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "red": 2, "green": 3, "blue": 4}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))


def test_text_search_with_a_users_text_model(tmp_path, service, make_instance):
    mean_colour_model(tmp_path / "model.onnx")
    colour_word_text_model(tmp_path / "text.onnx")
    colour_word_tokenizer(tmp_path / "tokenizer.json")
    text = {"onnx": "text.onnx", "tokenizer": "tokenizer.json", "output": "summed", "max_length": 8,
            "input_name": "ids", "attention_mask": "mask"}
    name = f"colour-words-{uuid.uuid4().hex[:8]}"  # registered for good: a name of this run
    spec_path = write_spec(tmp_path, name=name, text=text)
    spec = service.register_encoder(spec_path)
    assert spec.text is not None and spec.text.onnx == (tmp_path / "text.onnx").resolve()
    assert EncoderSpec.from_dict(spec.to_dict()) == spec  # stored and read back alike

    instance = make_instance("generic", encoder=name)
    for name, rgb in (("red", (220, 20, 20)), ("green", (20, 220, 20)), ("blue", (20, 20, 220))):
        picture = np.zeros((120, 120, 3), np.uint8)
        picture[:] = rgb
        service.add_image(instance.name, name, "1.png", encode(picture), crop=False)
    for word in ("red", "green", "blue"):
        found = service.search_by_text(instance.name, f"something {word}", num=3)
        assert found.matches[0].product_id == word and found.matches[0].score > 0.95
    assert service.search_by_text(instance.name, "green", filter='str_attr="x"').matches == []
    with pytest.raises(InvalidParameter, match="Text"):
        service.search_by_text(instance.name, "x" * 513)

    plain = make_instance("generic")
    with pytest.raises(InvalidParameter, match="no text model"):
        service.search_by_text(plain.name, "red")


def test_text_spec_errors(tmp_path):
    mean_colour_model(tmp_path / "model.onnx")
    for text, message in (
        ({"onnx": "missing.onnx", "tokenizer": "t.json", "output": "o"}, "does not exist"),
        ({"onnx": "model.onnx"}, "needs 'tokenizer'"),
        ("text.onnx", "must be a table"),
        ({"onnx": "model.onnx", "tokenizer": "model.onnx", "output": "o", "colour": 1}, "unknown text keys"),
    ):
        with pytest.raises(EncoderSpecError, match=message):
            EncoderSpec.from_file(write_spec(tmp_path, text=text))


def test_an_encoder_of_2000_numbers_serves_an_instance(service, make_instance, tmp_path):
    """The README's largest dim, 2000, end to end: registered, an instance made with it, pictures added
    through the service's pipeline and found again (2001 is refused above)."""
    name = register_small_encoder(service, tmp_path, 2000)
    assert next(e for e in service.list_encoders() if e["name"] == name)["dim"] == 2000
    instance = make_instance("generic", encoder=name)
    assert service.describe_instance(instance.name).embedding_dim == 2000
    colours = {"red": (220, 20, 20), "green": (20, 220, 20), "blue": (20, 20, 220)}
    for key, rgb in colours.items():
        service.add_image(instance.name, key, "1.png", encode(np.full((120, 120, 3), rgb, np.uint8)), crop=False)
    for key, rgb in colours.items():
        query = encode(np.full((150, 150, 3), rgb, np.uint8))
        found = service.search_by_picture(instance.name, query, crop=False, num=3)
        assert found.matches[0].product_id == key and found.matches[0].score > 0.999
        assert len(found.matches) == 3 and found.matches[1].score < found.matches[0].score
    assert service.search_by_name(instance.name, "green", "1.png", num=1).matches[0].product_id == "green"
