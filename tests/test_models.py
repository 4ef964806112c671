"""Model zoo: torchvision-equal parameter counts, every model × knob runs forward/backward,
init variances, dropout kinds, torchvision weight conversion, summaries and the CLI."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from conftest import randomise_bn_stats
from deeprecipe.cli import main
from deeprecipe.errors import DeepRecipeError
from deeprecipe.models import create_model, list_models, model_knobs
from deeprecipe.models.layers import ACTIVATIONS, NORMS, DropConnectLinear, dropout_layer, init_weights, matched_init, norm2d
from deeprecipe.models.summary import build_on_meta, count_flops, count_params, layer_table
from deeprecipe.models.torchvision_compat import convert_torchvision_state_dict

TORCHVISION_NAMES = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
                     "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]

# Small settings per model so one forward/backward costs milliseconds; (knobs, in_chans, input_size).
TINY_VGG = dict(width_mult=1 / 16, fc_width=16)
TINY = {
    "alexnet": (dict(width_mult=1 / 16, fc_width=16), 3, 64),
    "alexnet_small": (dict(width_mult=1 / 8, fc_width=16), 3, 28),
    "convnet": (dict(widths=[4, 8]), 1, 16),
    "lenet5": ({}, 1, 28),
    "mlp": (dict(depth=2, width=16), 1, 12),
    "vgglike": (dict(blocks=2, convs=2, width=4), 3, 16),
    **{f"vgg{d}{bn}": (TINY_VGG, 3, 32) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"resnet{d}": (dict(width=4), 3, 32) for d in (18, 34, 50, 101, 152)},
    **{f"{kind}{d}": (dict(width=4), 3, 16) for d in (20, 32, 44, 56, 110) for kind in ("resnet", "plain")},
    "allconvnet": (dict(width_mult=1 / 8), 3, 16),
    "nin": (dict(width_mult=1 / 8), 3, 16),
    # torchvision's networks at their own widths (tests/test_zoo.py has the per-family checks)
    **{name: ({}, 3, 32) for name in (
        "googlenet", "inception_v3", "densenet121", "densenet161", "densenet169", "densenet201", "mobilenet_v2",
        "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x1_0", "efficientnet_b0", "efficientnet_b1",
        "efficientnet_b2", "efficientnet_b3", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
        "convnext_tiny", "squeezenet1_1")},
}
# The full knob sweep runs on one model per family and block kind by default; the rest are slow.
SWEEP = ["mlp", "lenet5", "alexnet_small", "vgg11_bn", "vgglike", "resnet20", "plain20", "allconvnet", "nin",
         "mobilenet_v3_small", "squeezenet1_1"]
# Networks whose construction alone takes seconds here: their default run is a slow test.
HEAVY = {"inception_v3", "densenet161", "densenet169", "densenet201", "mobilenet_v2", "mobilenet_v3_large",
         "shufflenet_v2_x1_0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "resnext50_32x4d",
         "resnext101_32x8d", "wide_resnet50_2", "convnext_tiny"}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_param_count_equals_torchvision(name):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours = create_model(name, num_classes=1000, input_size=224)
        theirs = getattr(torchvision.models, name)(weights=None)
    assert n_params(ours) == n_params(theirs)


@pytest.mark.parametrize("depth, millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_cifar_resnets_match_he_2016_table6(depth, millions):
    with torch.device("meta"):
        resnet = create_model(f"resnet{depth}", num_classes=10)
        plain = create_model(f"plain{depth}", num_classes=10)
    digits = 1 if depth == 110 else 2
    assert round(n_params(resnet) / 1e6, digits) == millions
    assert n_params(plain) == n_params(resnet)  # option A shortcuts have no parameters
    convs = [m for m in resnet.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth  # 6n+2 weighted layers: convs + the classifier


def test_plain_nets_have_no_shortcuts_and_resnets_do():
    x = torch.randn(2, 3, 16, 16)
    for name, expect_skip in (("resnet20", True), ("plain20", False)):
        model = create_model(name, num_classes=10, width=4).eval()
        block = model.stage("layer1")[0]
        # Zeroing the residual branch leaves the input (through the ReLU) only when a shortcut exists.
        nn.init.zeros_(block.bn2.weight)
        nn.init.zeros_(block.bn2.bias)
        h = torch.relu(torch.randn(2, 4, 16, 16))
        assert torch.allclose(block(h), h) == expect_skip
        assert model(x).shape == (2, 10)
    with pytest.raises(DeepRecipeError, match="shortcut"):
        create_model("plain20", shortcut="conv")
    assert n_params(create_model("resnet20", shortcut="conv")) > n_params(create_model("resnet20"))


def test_stage_names():
    assert create_model("resnet18").stage_names == ["stem", "layer1", "layer2", "layer3", "layer4", "classifier"]
    assert create_model("resnet20").stage_names == ["stem", "layer1", "layer2", "layer3", "classifier"]
    assert create_model("vgg11", **TINY_VGG).stage_names == [f"block{i}" for i in range(1, 6)] + ["classifier"]
    assert create_model("alexnet_small").stage_names == [f"conv{i}" for i in range(1, 6)] + ["classifier"]


def test_alexnet_has_lrn_where_the_paper_puts_it():
    def count(model, kind):
        return sum(isinstance(m, kind) for m in model.modules())
    model = create_model("alexnet_small", width_mult=0.125, fc_width=16)
    assert count(model, nn.LocalResponseNorm) == 2
    assert all(isinstance(model.stage(s)[2], nn.LocalResponseNorm) for s in ("conv1", "conv2"))
    assert count(create_model("alexnet_small", norm="none"), nn.LocalResponseNorm) == 0
    assert count(create_model("alexnet_small", norm="batch", width_mult=0.125, fc_width=16), nn.BatchNorm2d) == 5


# ---------------------------------------------------------------------------------------------- every model runs
def _variants(name: str) -> list[dict]:
    """One knob varied at a time over every value that applies to this model."""
    knobs = set(model_knobs(name))
    out: list[dict] = [{}]
    if "norm" in knobs:
        out += [{"norm": n} for n in NORMS]
    if "activation" in knobs:
        out += [{"activation": a} for a in ACTIVATIONS]
    if "init" in knobs:
        out += [{"init": i} for i in ("default", "xavier_uniform", "he_normal", "lecun_normal")]
    if "dropout_kind" in knobs:
        kinds = ("standard", "dropconnect") if name == "mlp" else ("standard", "spatial", "dropconnect")
        out += [{"dropout": 0.3, "dropout_kind": k} for k in kinds]
    elif "dropout" in knobs:
        out.append({"dropout": 0.3})
    return out


def _run_variants(name: str) -> None:
    base, in_chans, size = TINY[name]
    x = torch.randn(2, in_chans, size, size)
    for variant in _variants(name):
        torch.manual_seed(0)
        model = create_model(name, num_classes=5, in_chans=in_chans, input_size=size, **base, **variant)
        model.train()
        out = model(x)
        assert out.shape == (2, 5), variant
        out.logsumexp(1).sum().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), variant
        model.eval()
        with torch.no_grad():  # the head API composes to forward
            assert torch.allclose(model.head(model.features(x)), model(x), atol=1e-6), variant
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name", SWEEP)
def test_every_knob_runs(name):
    _run_variants(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TINY if n not in SWEEP])
def test_every_knob_runs_on_the_rest(name):
    _run_variants(name)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in TINY if n not in SWEEP])
def test_every_model_runs_default(name):
    base, in_chans, size = TINY[name]
    model = create_model(name, num_classes=4, in_chans=in_chans, input_size=size, **base)
    out = model(torch.randn(2, in_chans, size, size))
    assert out.shape == (2, 4)
    out.sum().backward()


def test_registry_is_fully_covered():
    assert sorted(TINY) == list_models()


def test_bad_knobs_are_errors():
    with pytest.raises(DeepRecipeError, match="does not take 'depth'"):
        create_model("resnet18", depth=3)
    with pytest.raises(DeepRecipeError, match="did you mean"):
        create_model("resnet19")
    with pytest.raises(DeepRecipeError, match="norm 'bogus'"):
        create_model("resnet20", norm="bogus")
    with pytest.raises(DeepRecipeError, match="dropout_kind 'spatial'"):
        create_model("mlp", dropout=0.2, dropout_kind="spatial")
    with pytest.raises(DeepRecipeError, match="alexnet_small"):
        create_model("alexnet", input_size=32)
    with pytest.raises(DeepRecipeError, match="too small"):
        create_model("vgg11", input_size=16, **TINY_VGG)


# ---------------------------------------------------------------------------------------------- init
@pytest.mark.parametrize("family, variance", [
    ("xavier", lambda fi, fo: 2.0 / (fi + fo)), ("he", lambda fi, fo: 2.0 / fi), ("lecun", lambda fi, fo: 1.0 / fi)])
@pytest.mark.parametrize("dist", ["normal", "uniform"])
@pytest.mark.parametrize("layer, fan_in, fan_out", [
    (lambda: nn.Linear(600, 200), 600, 200), (lambda: nn.Conv2d(32, 96, 5), 32 * 25, 96 * 25)])
def test_init_variance(family, variance, dist, layer, fan_in, fan_out):
    torch.manual_seed(0)
    module = layer()
    nn.init.constant_(module.bias, 1.0)
    init_weights(module, f"{family}_{dist}")
    w = module.weight.detach().flatten().double()
    expected = variance(fan_in, fan_out)
    assert abs(w.mean().item()) < 0.02 * math.sqrt(expected)
    assert w.var().item() == pytest.approx(expected, rel=0.03)
    bound = math.sqrt(3 * expected)  # uniform(-a, a) with a²/3 = σ²
    assert (w.abs().max().item() <= bound) == (dist == "uniform")
    assert torch.all(module.bias == 0)


def test_init_short_names_are_normal_and_default_keeps_torch_init():
    torch.manual_seed(0)
    a, b = nn.Linear(500, 500), nn.Linear(500, 500)
    init_weights(a, "he")
    assert a.weight.var().item() == pytest.approx(2 / 500, rel=0.03)
    assert a.weight.abs().max().item() > math.sqrt(3 * 2 / 500)
    before = b.weight.clone()
    init_weights(b, "default")
    assert torch.equal(before, b.weight)


def test_model_init_knob_reaches_every_layer():
    model = create_model("resnet20", init="lecun_normal")
    conv = model.stage("layer3")[0].conv1
    fan_in = conv.weight[0].numel()
    assert conv.weight.var().item() == pytest.approx(1 / fan_in, rel=0.1)


@pytest.mark.parametrize("name, knobs", [("mlp", {"width": 400, "depth": 2}), ("convnet", {"widths": [16, 32, 400]}),
                                         ("resnet18", {})])
@pytest.mark.parametrize("act, variance", [("selu", lambda fi, fo: 1.0 / fi), ("tanh", lambda fi, fo: 2.0 / (fi + fo)),
                                           ("sigmoid", lambda fi, fo: 2.0 / (fi + fo)), ("relu", lambda fi, fo: 2.0 / fi),
                                           ("gelu", lambda fi, fo: 2.0 / fi)])
def test_unset_init_is_matched_to_the_activation(name, knobs, act, variance):
    """LeCun for SELU, Xavier for tanh/sigmoid, He for the ReLU family; torchvision nets too once their activation
    is swapped."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1, input_size=28, activation=act, **knobs)
    layer = max((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), key=lambda m: m.weight.numel())
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
    assert layer.weight.var().item() == pytest.approx(variance(fan_in, fan_out), rel=0.05)


def test_matched_init_names_the_activation_and_keeps_torch_init_without_one():
    assert matched_init(create_model("mlp", activation="selu")) == "lecun"
    assert matched_init(create_model("convnet", activation="tanh")) == "xavier"
    assert matched_init(create_model("convnet", activation="leaky_relu")) == "he"
    torch.manual_seed(0)
    linear_only = nn.Sequential(nn.Linear(300, 300))
    before = linear_only[0].weight.clone()
    init_weights(linear_only, "auto")
    assert torch.equal(before, linear_only[0].weight)


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet20", "lenet5"])
def test_auto_init_keeps_torchs_init_on_the_last_layer_so_the_first_loss_is_near_chance(name):
    # The matched (He) gain belongs to layers that feed a ReLU; on the classifier it spreads the logits: the
    # untrained MLP's loss was 3.1-3.6 and LeNet-5's up to 5 where chance is ln(10) = 2.30 (the doctor failed them).
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1, input_size=28, init="auto")
    head = model.last_linear()[2]
    bound = 1 / math.sqrt(head.in_features)  # nn.Linear's own init: kaiming_uniform(a=√5) → U(±1/√fan_in)
    assert head.weight.abs().max().item() <= bound
    assert head.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2)
    body_layer = [m for m in model.body.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][0]
    fan_in = body_layer.weight[0].numel()
    assert body_layer.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.2)  # He in the body
    from deeprecipe.data.sources import load_source
    digits = load_source("builtin:mnist5k")
    x = torch.as_tensor(np.asarray(digits.images[:256]), dtype=torch.float32) / 255
    x = (x - x.mean()) / x.std()  # normalised, as the pipeline feeds it
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model.train()(x), torch.as_tensor(np.asarray(digits.labels[:256])).long())
    assert abs(loss.item() - math.log(10)) < 0.35 * math.log(10)  # the doctor's tolerance
    explicit = create_model(name, num_classes=10, in_chans=1, input_size=28, init="he_normal").last_linear()[2]
    assert explicit.weight.std().item() == pytest.approx(math.sqrt(2.0 / explicit.in_features), rel=0.2)  # as asked


# ---------------------------------------------------------------------------------------------- dropout kinds
def test_dropconnect_drops_weights_in_training_and_averages_to_eval():
    torch.manual_seed(0)
    layer = DropConnectLinear(50, 4, p=0.5)
    x = torch.randn(1, 50)
    layer.eval()
    exact = layer(x)
    assert torch.equal(exact, nn.functional.linear(x, layer.weight, layer.bias))
    layer.train()
    samples = torch.stack([layer(x) for _ in range(4000)])
    assert not torch.allclose(samples[0], samples[1])
    assert torch.allclose(samples.mean(0), exact, atol=0.05 * exact.abs().max().item() + 0.05)
    model = create_model("mlp", dropout=0.5, dropout_kind="dropconnect", width=16)
    assert sum(isinstance(m, DropConnectLinear) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_spatial_dropout_drops_whole_channels():
    torch.manual_seed(0)
    layer = dropout_layer("spatial", 0.5, "features").train()
    out = layer(torch.ones(4, 64, 5, 5))
    per_channel = out.flatten(2)
    assert torch.all((per_channel == 0).all(2) | (per_channel == 2.0).all(2))  # all or nothing, scaled 1/(1-p)
    assert 0.3 < (per_channel == 0).all(2).float().mean().item() < 0.7
    assert isinstance(dropout_layer("spatial", 0.5, "vector"), nn.Identity)
    lenet = create_model("lenet5", dropout=0.2, dropout_kind="spatial")
    assert sum(isinstance(m, nn.Dropout2d) for m in lenet.modules()) == 2
    assert not any(type(m) is nn.Dropout for m in lenet.modules())


# ---------------------------------------------------------------------------------------------- torchvision weights
@pytest.mark.parametrize("name, knobs, size", [
    ("resnet18", {}, 64), pytest.param("resnet50", {}, 64, marks=pytest.mark.slow),
    pytest.param("alexnet", {"norm": "none"}, 64, marks=pytest.mark.slow),
    pytest.param("vgg11_bn", {}, 32, marks=pytest.mark.slow)])
def test_torchvision_state_dict_gives_same_outputs(name, knobs, size):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    randomise_bn_stats(theirs)
    ours = create_model(name, num_classes=1000, **knobs).eval()
    ours.load_state_dict(convert_torchvision_state_dict(name, theirs.state_dict()), strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_torchvision_conversion_rejects_wrong_input():
    with torch.device("meta"):
        state = torchvision.models.resnet18(weights=None).state_dict()
    with pytest.raises(DeepRecipeError, match="no torchvision weight mapping"):
        convert_torchvision_state_dict("resnet20", state)
    with pytest.raises(DeepRecipeError, match="not torchvision's vgg11 layout"):
        convert_torchvision_state_dict("vgg11", state)


# ---------------------------------------------------------------------------------------------- summaries and CLI
def test_flops_match_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 10 * 10, 5))
    macs = 8 * 10 * 10 * 3 * 9 + 800 * 5
    assert count_flops(model, 3, 10) == 2 * macs
    resnet20 = build_on_meta("resnet20", 10, 3, 32)
    assert count_params(resnet20) == 269_722
    assert 40e6 < count_flops(resnet20, 3, 32) / 2 < 42e6  # He et al.: ~41 M multiply-adds


def test_layer_table_shapes_and_params_add_up():
    model = build_on_meta("resnet20", 10, 3, 32)
    rows = {r.name: r for r in layer_table(model, 3, 32)}
    assert rows["body.stem.conv1"].output_shape == (16, 32, 32)
    assert rows["body.layer3.2.conv2"].output_shape == (64, 8, 8)
    assert rows["classifier"].output_shape == (10,)
    assert sum(r.params for r in rows.values()) == 269_722


def test_cli_models_list_and_table(capsys):
    assert main(["models", "--family", "resnet", "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("resnet20 "))
    assert "269.72k" in line and "81.10M" in line
    assert main(["models", "resnet20", "--set", "norm=group"]) == 0
    out = capsys.readouterr().out
    assert "GroupNorm" in out and "269,722 parameters" in out
    assert main(["models", "alexnet"]) == 2  # too small at the default 32 px
    assert "alexnet_small" in capsys.readouterr().err
    assert main(["models", "resnet18", "--set", "depth=3"]) == 2


# ---------------------------------------------------------------------------------------------- real data
def test_zoo_model_learns_mnist(tmp_path, mnist_small_npz):
    from deeprecipe.api import train
    summary = train(overrides=[f"data.spec={mnist_small_npz}", "model.name=vgglike", "model.blocks=3", "model.convs=2",
                               "model.width=16", "train.epochs=3", "train.batch_size=32"], out=tmp_path / "run",
                    show_progress=False)
    # Three short epochs of a small VGG (widths 16/32/64, two convs each) on 700 images: 0.9 measured; a net
    # that does not learn stays near chance (0.1).
    assert summary["test_acc"] > 0.7, summary["test_acc"]


def test_group_norm_keeps_at_least_four_channels_a_group():
    from deeprecipe.models.layers import norm2d
    for channels in (8, 16, 32, 64, 256):
        gn = norm2d("group", channels)
        assert channels // gn.num_groups >= 4 and gn.num_groups > 1  # neither instance norm nor layer norm
    assert norm2d("group", 256).num_groups == 32  # Wu & He's default where the width allows it


@pytest.mark.parametrize("kind", ["layer", "instance", "group"])
def test_group_norms_give_torch_results_in_channels_last_and_keep_the_layout(kind):
    """The per-sample norms compute channels_last CPU inputs in the contiguous layout (torch's channels_last
    kernel is slow for small groups): same outputs and gradients as nn.GroupNorm, output still channels_last."""
    torch.manual_seed(0)
    ours = norm2d(kind, 16)
    ref = nn.GroupNorm(ours.num_groups, 16)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 16, 9, 9).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = ours(a)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, ref(b), atol=1e-5)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (ref(b) * weight).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)
    # each sample normalised on its own: the other sample in the batch does not matter
    assert torch.allclose(ours(x[:1]), out[:1], atol=1e-5)


# ------------------------------------------------------------------------------------------ the convnet on photos
def test_the_convnet_downsamples_photos_first_and_leaves_small_images_alone():
    from torch.utils.flop_counter import FlopCounterMode
    from deeprecipe.models.convnet import STEM_FROM

    def flops(model, size):
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, size, size))
        return counter.get_total_flops()

    digits = create_model("convnet", num_classes=10, in_chans=3, input_size=28)
    photos = create_model("convnet", num_classes=4, in_chans=3, input_size=224)
    assert "stem" not in digits.stage_names and photos.stage_names[0] == "stem"
    assert "stem" in create_model("convnet", num_classes=4, input_size=STEM_FROM).stage_names
    assert "stem" not in create_model("convnet", num_classes=4, input_size=STEM_FROM - 1).stage_names
    forced_off = create_model("convnet", num_classes=4, in_chans=3, input_size=224, stem=False)
    # ×4 fewer pixels for every stage: over 10× fewer FLOPs at 224 px, the same logits shape
    assert flops(forced_off, 224) > 10 * flops(photos, 224)
    assert photos(torch.zeros(2, 3, 224, 224)).shape == (2, 4)
    assert create_model("convnet", num_classes=10, input_size=28, stem=True)(torch.zeros(2, 3, 28, 28)).shape == (2, 10)


def test_a_convnet_saved_before_the_stem_existed_rebuilds_without_it():
    from deeprecipe.config import resolve_config
    from deeprecipe.session import rebuild_model
    old = create_model("convnet", num_classes=4, in_chans=3, input_size=224, stem=False)
    ckpt = {"config": resolve_config(None, []).to_dict(), "classes": list("abcd"), "input_shape": [3, 224, 224],
            "model": old.state_dict()}
    assert "stem" not in ckpt["config"]["model"]
    model, _ = rebuild_model(ckpt, "old-run")
    assert "stem" not in model.stage_names
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(model.eval()(x), old.eval()(x))
    # and a run saved with the stem keeps it
    new = create_model("convnet", num_classes=4, in_chans=3, input_size=224)
    model, _ = rebuild_model({**ckpt, "model": new.state_dict()}, "new-run")
    assert model.stage_names[0] == "stem"
