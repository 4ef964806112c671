"""The batched image ops against torchvision's per-image functions (or a hand computation where the op is our
own), one random parameter per sample, on a few small RGB and gray images (milliseconds each)."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from deeprecipe.data import batchops as B


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 9, 8, generator=g)


F4 = torch.tensor([0.0, 0.5, 1.3, 2.0])


def _each(x, f, fn):
    return torch.stack([fn(img, float(v)) for img, v in zip(x, f)])


def test_parameter_draws():
    g = torch.Generator().manual_seed(1)
    u = B.uniform(2.0, 5.0, 1000, g, "cpu")
    assert u.shape == (1000,) and u.min() >= 2.0 and u.max() < 5.0 and abs(u.mean().item() - 3.5) < 0.1
    again = B.uniform(2.0, 5.0, 1000, torch.Generator().manual_seed(1), "cpu")
    assert torch.equal(u, again)
    s = B.random_sign(1000, torch.Generator().manual_seed(2), "cpu")
    assert set(s.tolist()) == {-1.0, 1.0} and s.dtype == torch.float32 and abs(s.mean().item()) < 0.1
    assert torch.equal(s, B.random_sign(1000, torch.Generator().manual_seed(2), "cpu"))  # drawn from the generator
    assert B.per_sample(torch.arange(3.0)).shape == (3, 1, 1, 1)


def test_gray_is_luma(x):
    assert torch.allclose(B.gray(x), TF.rgb_to_grayscale(x), atol=1e-3)
    assert torch.allclose(B.gray(x)[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], atol=1e-6)
    one = x[:, :1]
    assert B.gray(one) is one


def test_brightness_contrast_saturation_match_torchvision(x):
    assert torch.allclose(B.adjust_brightness(x, F4), _each(x, F4, TF.adjust_brightness), atol=1e-6)
    assert torch.allclose(B.adjust_contrast(x, F4), _each(x, F4, TF.adjust_contrast), atol=1e-3)
    assert torch.allclose(B.adjust_saturation(x, F4), _each(x, F4, TF.adjust_saturation), atol=1e-3)
    g = x[:, :1]
    assert torch.allclose(B.adjust_contrast(g, F4), _each(g, F4, TF.adjust_contrast), atol=1e-6)
    assert B.adjust_saturation(g, F4) is g and B.adjust_hue(g, F4) is g


def test_hue_rotates_chroma_and_keeps_luma():
    g = torch.Generator().manual_seed(3)
    x = 0.3 + 0.4 * torch.rand(4, 3, 5, 5, generator=g)  # mid-range colours: no clamping
    shift = torch.tensor([0.0, 0.1, -0.2, 0.5])
    out = B.adjust_hue(x, shift)
    assert torch.allclose(out[0], x[0], atol=1e-5)
    assert torch.allclose(B.gray(out), B.gray(x), atol=1e-4)  # Y of YIQ is the luma
    back = B.adjust_hue(out, -shift)
    assert torch.allclose(back, x, atol=1e-4)
    assert (out[1] - x[1]).abs().max() > 0.02  # it does move the colours
    chroma = x - B.gray(x)
    half = B.adjust_hue(x, torch.full((4,), 0.5))  # half a turn flips the chroma plane
    assert torch.allclose(half - B.gray(half), -chroma, atol=1e-4)
    assert B.adjust_hue(torch.ones(1, 3, 2, 2) * 2, torch.zeros(1)).max() == 1.0  # clamped


def test_hue_is_a_rotation_of_the_yiq_chroma_plane():
    # by hand: to YIQ, turn (I, Q) by the shift's angle (counter-clockwise), back to RGB; in float64 throughout
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
    x = 0.3 + 0.4 * torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    shift = torch.tensor([0.05, -0.1, 0.25], dtype=torch.float64)
    out = B.adjust_hue(x, shift)
    assert out.dtype == torch.float64
    for img, res, s in zip(x, out, shift.tolist()):
        c, n = math.cos(2 * math.pi * s), math.sin(2 * math.pi * s)
        turn = torch.tensor([[1, 0, 0], [0, c, -n], [0, n, c]], dtype=torch.float64)
        ref = torch.einsum("ij,jhw->ihw", torch.linalg.inv(yiq) @ turn @ yiq, img)
        assert torch.allclose(res, ref, atol=1e-12)
    # saturated colours leave the cube on both sides: clamped to 0..1
    primaries = torch.eye(3).view(3, 3, 1, 1)
    turned = B.adjust_hue(primaries, torch.full((3,), 0.5))
    assert turned.min() == 0.0 and turned.max() == 1.0


def test_gray_keeps_double_precision():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    g = B.gray(x)
    assert g.dtype == torch.float64
    assert torch.allclose(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2], atol=1e-15, rtol=0)


def test_gaussian_kernels_and_blur_match_torchvision(x):
    sigma = torch.tensor([0.5, 0.8, 1.2, 2.0])
    k = B.gaussian_kernels(sigma, 5)
    r = torch.arange(5.0) - 2
    for row, s in zip(k, sigma):
        ref = torch.exp(-r ** 2 / (2 * s ** 2))
        assert torch.allclose(row, ref / ref.sum(), atol=1e-7)
    out = B.blur(x, sigma, 5)
    ref = torch.stack([TF.gaussian_blur(img, [5, 5], [float(s), float(s)]) for img, s in zip(x, sigma)])
    assert torch.allclose(out, ref, atol=1e-5)
    double = B.blur(x.double(), sigma, 5)  # the kernels follow the batch's dtype
    assert double.dtype == torch.float64 and torch.allclose(double, out.double(), atol=1e-6)
    tall = torch.rand(2, 1, 9, 2, generator=torch.Generator().manual_seed(4))  # too narrow to reflect by 2
    const = torch.full((2, 1, 3, 2), 0.4)
    assert torch.allclose(B.blur(const, sigma[:2], 5), const, atol=1e-6)
    narrow = B.blur(tall, sigma[:2], 5)
    ref = torch.nn.functional.pad(tall.reshape(1, 2, 9, 2), (2, 2, 0, 0), mode="replicate")
    ref = torch.nn.functional.conv2d(ref, B.gaussian_kernels(sigma[:2], 5).view(2, 1, 1, 5), groups=2)
    ref = torch.nn.functional.pad(ref, (0, 0, 2, 2), mode="reflect")
    ref = torch.nn.functional.conv2d(ref, B.gaussian_kernels(sigma[:2], 5).view(2, 1, 5, 1), groups=2)
    assert torch.allclose(narrow, ref.view(2, 1, 9, 2), atol=1e-6)
    wide = tall.transpose(2, 3)  # too short to reflect: the vertical pass replicates
    assert torch.allclose(B.blur(wide, sigma[:2], 5).transpose(2, 3), narrow, atol=1e-6)


def test_sharpness_blends_with_a_smoothed_copy(x):
    smooth = B.blur(x, torch.full((4,), 0.8), 3)
    out = B.adjust_sharpness(x, F4)
    expected = (smooth + (x - smooth) * F4.view(-1, 1, 1, 1)).clamp(0, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(B.adjust_sharpness(x, torch.ones(4)), x, atol=1e-6)


def test_solarize_posterize_autocontrast(x):
    th = torch.tensor([0.0, 0.3, 0.7, 1.0])
    assert torch.allclose(B.solarize(x, th), _each(x, th, TF.solarize))
    edge = torch.full((1, 1, 1, 2), 0.5)
    assert B.solarize(edge, torch.tensor([0.5])).tolist() == [[[[0.5, 0.5]]]]
    at = torch.tensor([[[[0.25, 0.75]]]])
    assert torch.equal(B.solarize(at, torch.tensor([0.25])), TF.solarize(at[0], 0.25)[None])  # at the threshold: inverted
    assert B.solarize(at, torch.tensor([0.25])).tolist() == [[[[0.75, 0.25]]]]
    v = torch.tensor([0.0, 0.2, 0.26, 0.49, 0.5, 0.74, 0.75, 0.99, 1.0]).view(1, 1, 1, -1)
    assert B.posterize(v, torch.tensor([1.0])).flatten().tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    two = B.posterize(v, torch.tensor([2.0])).flatten()
    assert torch.allclose(two, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 3]) / 3)
    assert B.posterize(v, torch.tensor([0.0])).abs().max() == 0  # one level: no division by zero
    eight = B.posterize(x, torch.full((4,), 8.0))
    assert (eight - x).abs().max() <= 1 / 255 + 1e-6
    assert torch.allclose(B.autocontrast(x), TF.autocontrast(x), atol=1e-6)
    flat = torch.full((1, 2, 3, 3), 0.3)
    flat[0, 1, 0, 0] = 0.3 + 1e-7  # a span below 1e-6 is treated as flat
    assert torch.equal(B.autocontrast(flat), flat)
    bar = torch.tensor(1e-6, dtype=torch.float32)  # a span of exactly the bar is still flat
    edge_flat = torch.stack([torch.zeros(()), bar]).view(1, 1, 1, 2)
    assert (edge_flat.amax() - edge_flat.amin()) == bar and torch.equal(B.autocontrast(edge_flat), edge_flat)
    ramp = torch.linspace(0.2, 0.6, 4).view(1, 1, 2, 2)
    assert torch.allclose(B.autocontrast(ramp).flatten(), torch.tensor([0, 1 / 3, 2 / 3, 1]))


# ------------------------------------------------------------------------------------------ geometry
def _forward(angle, shx, shy, tx, ty, scale):
    a = math.radians(angle)
    rot = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=torch.float32)
    shear = torch.tensor([[1, shx, 0], [shy, 1, 0], [0, 0, 1]], dtype=torch.float32)
    move = torch.tensor([[scale, 0, 2 * tx], [0, scale, 2 * ty], [0, 0, 1]], dtype=torch.float32)
    return move @ rot @ shear


def test_affine_theta_is_the_inverse_of_zoom_rotate_shear():
    params = [(30.0, 0.1, -0.2, 0.1, -0.05, 1.2), (-90.0, 0.0, 0.3, -0.2, 0.0, 0.8), (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)]
    cols = [torch.tensor(c) for c in zip(*params)]
    theta = B.affine_theta(*cols)
    assert theta.shape == (3, 2, 3)
    for th, p in zip(theta, params):
        assert torch.allclose(th, torch.linalg.inv(_forward(*p))[:2], atol=1e-5)
    plain = B.affine_theta(torch.tensor([30.0, 0.0]))
    assert torch.allclose(plain[0], torch.linalg.inv(_forward(30.0, 0, 0, 0, 0, 1))[:2], atol=1e-6)
    assert torch.allclose(plain[1], torch.eye(3)[:2])


def test_warp_moves_rotates_and_fills_black():
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 1, 2] = 1.0
    moved = B.warp(img, B.affine_theta(torch.zeros(1), tx=torch.tensor([0.25]), ty=torch.tensor([0.125])))
    expected = torch.zeros(1, 1, 8, 8)
    expected[0, 0, 2, 4] = 1.0  # a quarter of the width right, an eighth of the height down
    assert torch.allclose(moved, expected, atol=1e-5)
    turned = B.warp(img, B.affine_theta(torch.tensor([90.0])))
    assert torch.allclose(turned, torch.rot90(img, k=-1, dims=(2, 3)), atol=1e-5)  # +90° turns clockwise on screen
    nearest = B.warp(img, B.affine_theta(torch.tensor([0.0]), tx=torch.tensor([0.06])), mode="nearest")
    assert set(nearest.unique().tolist()) <= {0.0, 1.0}
    bilinear = B.warp(img, B.affine_theta(torch.tensor([0.0]), tx=torch.tensor([0.06])))
    assert 0 < bilinear.max() < 1  # a half-pixel shift spreads the dot
    out = B.warp(torch.ones(1, 1, 4, 4, dtype=torch.float64), B.affine_theta(torch.tensor([0.0]), tx=torch.tensor([0.5])))
    assert out.dtype == torch.float64 and out[0, 0, :, :2].abs().max() == 0  # shifted in: black


def test_box_masks_are_half_open_boxes_clipped_to_the_image():
    m = B.box_masks(6, 6, torch.tensor([3.0, 0.0]), torch.tensor([3.0, 5.0]), torch.tensor([2.0, 4.0]),
                    torch.tensor([2.0, 3.0]))
    assert m.shape == (2, 1, 6, 6) and m.dtype == torch.bool
    assert m[0, 0].nonzero().tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]
    assert m[1, 0].nonzero().tolist() == [[0, 4], [0, 5], [1, 4], [1, 5]]  # rows -2..2, cols 3.5..6.5 clipped
    wide = B.box_masks(3, 5, torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([2.0]), torch.tensor([4.0]))
    assert wide[0, 0].sum() == 8 and wide[0, 0, 2].sum() == 0


def test_box_masks_match_a_pixel_by_pixel_reference():
    # random real-valued boxes, some over the edges: each pixel (r, c) is inside when top <= r < bottom and
    # left <= c < right, with the box's half sizes on either side of its centre
    g = torch.Generator().manual_seed(5)
    h, w, n = 7, 9, 40
    cy, cx = B.uniform(-1.0, h + 1.0, n, g, "cpu"), B.uniform(-1.0, w + 1.0, n, g, "cpu")
    bh, bw = B.uniform(0.5, h, n, g, "cpu"), B.uniform(0.5, w, n, g, "cpu")
    masks = B.box_masks(h, w, cy, cx, bh, bw)
    for m, y, x, sh, sw in zip(masks, cy.tolist(), cx.tolist(), bh.tolist(), bw.tolist()):
        ref = [[y - sh / 2 <= r < y + sh / 2 and x - sw / 2 <= c < x + sw / 2 for c in range(w)] for r in range(h)]
        assert m[0].tolist() == ref
    full = B.box_masks(6, 6, torch.tensor([3.0]), torch.tensor([3.0]), torch.tensor([6.0]), torch.tensor([6.0]))
    assert bool(full.all())  # a box the size of the image covers all of it


def test_ops_allocate_on_the_input_device():
    # The batch's device, not the default one: with the default device set to "meta", anything created without
    # the input's device would be a meta tensor and fail to combine with the CPU inputs (on a GPU machine the
    # same slip puts a CPU tensor next to CUDA ones).
    x = torch.rand(2, 3, 5, 6, generator=torch.Generator().manual_seed(9))
    angle, t, f = torch.tensor([30.0, -10.0]), torch.tensor([3.0, 1.0]), torch.tensor([0.1, 0.3])
    ops = {"affine_theta": lambda: B.affine_theta(angle), "box_masks": lambda: B.box_masks(5, 6, t, t, t, t),
           "gray": lambda: B.gray(x), "hue": lambda: B.adjust_hue(x, f), "sharpness": lambda: B.adjust_sharpness(x, f),
           "kernels": lambda: B.gaussian_kernels(t, 3),
           "uniform": lambda: B.uniform(0.0, 1.0, 4, torch.Generator().manual_seed(1), "cpu"),
           "sign": lambda: B.random_sign(4, torch.Generator().manual_seed(1), "cpu")}
    for name, op in ops.items():
        expected = op()
        with torch.device("meta"):
            out = op()
        assert out.device.type == "cpu" and torch.equal(out, expected), name


def test_warp_is_silent():
    # affine_grid and grid_sample warn on every call unless align_corners is given: an augmentation at every step
    # must not fill the log
    img = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("bilinear", "nearest"):
            B.warp(img, B.affine_theta(torch.tensor([20.0, -5.0])), mode=mode)


def test_random_resized_crop_is_torchvisions_resized_crop_of_each_drawn_box():
    from deeprecipe.data.resize import random_crop_boxes, random_resized_crop
    images = torch.rand(6, 3, 40, 30, generator=torch.Generator().manual_seed(2))
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = random_crop_boxes(6, 40, 30, scale, ratio, torch.Generator().manual_seed(5))
    out = random_resized_crop(images, (16, 12), scale, ratio, torch.Generator().manual_seed(5))
    for img, crop, (top, left, h, w) in zip(images, out, boxes):
        assert 0 <= top <= 40 - h and 0 <= left <= 30 - w and h >= 1 and w >= 1  # inside the image
        want = TF.resized_crop(img, top, left, h, w, [16, 12], antialias=False)
        assert torch.allclose(crop, want, atol=1e-5)
    many = random_crop_boxes(4000, 100, 100, scale, ratio, torch.Generator().manual_seed(0))
    areas = torch.tensor([h * w / 1e4 for _, _, h, w in many])
    assert 0.07 <= float(areas.min()) and float(areas.max()) <= 1.0 and 0.4 < float(areas.mean()) < 0.6
    lefts = torch.tensor([left / (100 - w) for _, left, _, w in many if w < 100])
    assert 0.4 < float(lefts.mean()) < 0.6  # positions spread over where the box fits, not stuck at a corner
