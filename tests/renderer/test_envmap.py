"""Environment maps: the RGBE (.hdr) reader on hand-made flat and run-length files, malformed
files, the shipped Venice map; pixel geometry, lookup, rotation; SH9 irradiance against
closed forms (constant sky, hemisphere) and a brute-force integral, plus a negative control."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from renderer.envmap import (
    COSINE_LOBE,
    EnvironmentMap,
    EnvMapError,
    read_hdr,
    sh9_irradiance,
    write_hdr,
)
from renderer.shading import srgb_to_linear

HEADER = b"#?RADIANCE\n# hand-made\nFORMAT=32-bit_rle_rgbe\n\n"


def _rgbe(m: float, e: int) -> float:
    """The reference decoding of one channel: (m + 0.5) / 256 · 2^(e − 128), 0 when e = 0."""
    return 0.0 if e == 0 else (m + 0.5) / 256.0 * 2.0 ** (e - 128)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _unit(v: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(v, dim=-1)


def _normals(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Random unit normals plus the six axis directions, float64."""
    g = torch.Generator().manual_seed(seed)
    axes = torch.cat([torch.eye(3), -torch.eye(3)]).double()
    return torch.cat([axes, _unit(torch.randn(n, 3, generator=g, dtype=torch.float64))])


def _brute_irradiance(env: EnvironmentMap, normals: torch.Tensor) -> torch.Tensor:
    """E(n) = Σ_pixels L · max(n·ω, 0) · Δω at pixel centres (independent of the SH path)."""
    d = env.direction_of_pixels().double().reshape(-1, 3)
    w = env.solid_angles().double().reshape(-1, 1)
    return (normals.double() @ d.T).clamp_min(0) @ (env.radiance.double().reshape(-1, 3) * w)


# ---------------------------------------------------------------------------------------------
# Reading and writing .hdr
# ---------------------------------------------------------------------------------------------


def _hdr_image(seed: int = 0) -> np.ndarray:
    """A 32×64 image with a wide dynamic range, flat regions (for runs) and exact zeros."""
    rng = np.random.default_rng(seed)
    img = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), size=(32, 64, 3))).astype(np.float32)
    img[:8] = (0.5, 2.0, 7.0)  # long runs in every channel
    img[8:10, :20] = 0.0
    return img


@pytest.mark.parametrize("rle", [True, False], ids=["rle", "flat"])
def test_rgbe_round_trip(tmp_path, rle):
    img = _hdr_image()
    path = tmp_path / "img.hdr"
    write_hdr(path, img, rle=rle)
    back = read_hdr(path)
    assert back.shape == img.shape and back.dtype == np.float32
    # RGBE keeps 8 mantissa bits for the largest channel of each pixel: with mid-bin decoding
    # its relative error is ≤ 0.5/128; smaller channels share its exponent, so their absolute
    # error is ≤ that channel's bin width (largest / 128).
    big = img.max(axis=-1, keepdims=True)
    assert np.all(np.abs(back - img) <= big / 128.0 + 1e-30)
    rel = np.abs(back.max(-1) - img.max(-1)) / np.maximum(img.max(-1), 1e-30)
    assert rel.max() < 0.01
    np.testing.assert_array_equal(back[8:10, :20], 0.0)
    # Re-writing decoded values reproduces the same bytes (mid-bin values are fixed points).
    write_hdr(tmp_path / "again.hdr", back, rle=rle)
    assert (tmp_path / "again.hdr").read_bytes() == path.read_bytes()


def test_rle_is_smaller_and_reads_the_same(tmp_path):
    img = _hdr_image()
    write_hdr(tmp_path / "rle.hdr", img, rle=True)
    write_hdr(tmp_path / "flat.hdr", img, rle=False)
    assert (tmp_path / "rle.hdr").stat().st_size < (tmp_path / "flat.hdr").stat().st_size
    np.testing.assert_array_equal(read_hdr(tmp_path / "rle.hdr"), read_hdr(tmp_path / "flat.hdr"))


def test_hand_made_flat_file(tmp_path):
    pixels = [  # (r, g, b, e) bytes, row 0 first
        (128, 64, 0, 129), (255, 255, 255, 128), (0, 0, 0, 0),
        (200, 100, 50, 120), (128, 128, 128, 136), (10, 20, 30, 0),
    ]
    data = b"#?RGBE\nEXPOSURE=1.0\n\n-Y 2 +X 3\n" + bytes(b for px in pixels for b in px)
    img = read_hdr(_write(tmp_path, "flat.hdr", data))  # no FORMAT line: RGBE by default
    want = np.array([[_rgbe(m, px[3]) for m in px[:3]] for px in pixels]).reshape(2, 3, 3)
    assert img.shape == (2, 3, 3)
    np.testing.assert_allclose(img, want, rtol=1e-7)
    np.testing.assert_allclose(img[0, 0], [1.00390625, 0.50390625, 0.00390625])  # 2^1 scale
    np.testing.assert_array_equal(img[1, 2], 0.0)  # e = 0 is black whatever the mantissas


def test_hand_made_rle_file_with_a_flat_scanline(tmp_path):
    width = 8  # the narrowest width with new-style RLE
    rle_row = bytes((2, 2, 0, width))
    rle_row += bytes((128 + 8, 128))  # R: a run of 8 × 128
    rle_row += bytes((3, 10, 20, 30, 128 + 5, 40))  # G: 3 literals, then a run of 5 × 40
    rle_row += bytes((8, 200, 0, 1, 2, 3, 4, 5, 255))  # B: 8 literals
    rle_row += bytes((128 + 2, 130, 128 + 6, 129))  # E: runs of 2 × 130 and 6 × 129
    flat_row = bytes(b for c in range(width) for b in (128 + c, 7, 9, 131))  # a flat scanline
    img = read_hdr(_write(tmp_path, "rle.hdr", HEADER + b"-Y 2 +X 8\n" + rle_row + flat_row))
    r, g, b = [128] * 8, [10, 20, 30] + [40] * 5, [200, 0, 1, 2, 3, 4, 5, 255]
    e = [130, 130] + [129] * 6
    want0 = [[_rgbe(r[i], e[i]), _rgbe(g[i], e[i]), _rgbe(b[i], e[i])] for i in range(width)]
    want1 = [[_rgbe(128 + c, 131), _rgbe(7, 131), _rgbe(9, 131)] for c in range(width)]
    np.testing.assert_allclose(img, np.array([want0, want1]), rtol=1e-7)


def test_hand_made_old_style_run_length(tmp_path):
    # Old (pre-1991) RLE: a pixel (1, 1, 1, n) repeats the previous pixel n times.
    data = HEADER + b"-Y 1 +X 5\n" + bytes((128, 0, 0, 129, 1, 1, 1, 3, 64, 64, 64, 130))
    img = read_hdr(_write(tmp_path, "old.hdr", data))
    np.testing.assert_allclose(img[0, :4], [[_rgbe(128, 129), _rgbe(0, 129), _rgbe(0, 129)]] * 4)
    np.testing.assert_allclose(img[0, 4], [_rgbe(64, 130)] * 3)


_GOOD_RLE_ROW = bytes((2, 2, 0, 8, 136, 128, 136, 64, 136, 0, 136, 129))
_MALFORMED = {  # name: (file bytes, a phrase the message must hold)
    "empty": (b"", "not a Radiance HDR"),
    "bad-magic": (b"P6\n8 1\n255\n" + bytes(24), "not a Radiance HDR"),
    "no-blank-line": (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n-Y 1 +X 8\n", "blank line"),
    "xyze": (b"#?RADIANCE\nFORMAT=32-bit_rle_xyze\n\n-Y 1 +X 8\n" + _GOOD_RLE_ROW, "xyze"),
    "unknown-format": (b"#?RADIANCE\nFORMAT=16-bit\n\n-Y 1 +X 8\n", "FORMAT"),
    "no-resolution": (HEADER, "resolution line"),
    "bad-resolution": (HEADER + b"-Y two +X 8\n" + _GOOD_RLE_ROW, "resolution line"),
    "flipped-orientation": (HEADER + b"+Y 1 +X 8\n" + _GOOD_RLE_ROW, "orientation"),
    "transposed-orientation": (HEADER + b"-X 8 +Y 1\n" + _GOOD_RLE_ROW, "orientation"),
    "zero-size": (HEADER + b"-Y 0 +X 8\n", "empty image"),
    "huge-size": (HEADER + b"-Y 100000 +X 100000\n", "implausible"),
    "truncated-flat": (HEADER + b"-Y 2 +X 3\n" + bytes((128, 0, 0, 129)) * 5, "truncated"),
    "truncated-rle": (HEADER + b"-Y 2 +X 8\n" + _GOOD_RLE_ROW + _GOOD_RLE_ROW[:-3], "truncated"),
    "run-overrun": (HEADER + b"-Y 1 +X 8\n" + bytes((2, 2, 0, 8, 137, 1)) + _GOOD_RLE_ROW[6:],
                    "bad run length"),
    "literal-overrun": (HEADER + b"-Y 1 +X 8\n" + bytes((2, 2, 0, 8, 9)) + bytes(20),
                        "bad run length"),
    "rle-width-mismatch": (HEADER + b"-Y 1 +X 8\n" + bytes((2, 2, 0, 9)) + _GOOD_RLE_ROW[4:],
                           "width 9"),
    "trailing-bytes": (HEADER + b"-Y 1 +X 8\n" + _GOOD_RLE_ROW + bytes(4), "after the last"),
    "old-run-first": (HEADER + b"-Y 1 +X 2\n" + bytes((1, 1, 1, 2, 128, 0, 0, 129)), "run"),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED))
def test_malformed_files_raise_envmap_error_naming_the_file(tmp_path, case):
    data, phrase = _MALFORMED[case]
    path = _write(tmp_path, f"{case}.hdr", data)
    with pytest.raises(EnvMapError) as info:
        read_hdr(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert re.search(re.escape(phrase), str(info.value), re.IGNORECASE), str(info.value)


def test_good_rle_row_reads(tmp_path):
    # The fixture the malformed cases are built from is itself valid.
    img = read_hdr(_write(tmp_path, "ok.hdr", HEADER + b"-Y 1 +X 8\n" + _GOOD_RLE_ROW))
    np.testing.assert_allclose(img[0], [[_rgbe(128, 129), _rgbe(64, 129), _rgbe(0, 129)]] * 8)


def test_random_corruption_raises_only_envmap_error(tmp_path):
    # Truncations and byte flips of a valid RLE file: read_hdr either succeeds with a finite
    # image or raises EnvMapError — never IndexError, struct errors or the like.
    write_hdr(tmp_path / "src.hdr", _hdr_image()[:6, :16])
    good = (tmp_path / "src.hdr").read_bytes()
    rng = random.Random(0)
    path = tmp_path / "bad.hdr"
    failures = 0
    for trial in range(300):
        data = bytearray(good)
        if trial % 3 == 0:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            img = read_hdr(path)
        except EnvMapError as e:
            assert str(path) in str(e)
            failures += 1
        else:
            assert np.all(np.isfinite(img)) and np.all(img >= 0)
    assert failures >= 100  # every truncation fails, at least


def test_write_hdr_rejects_bad_images(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_hdr(tmp_path / "a.hdr", np.full((2, 8, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="H, W, 3"):
        write_hdr(tmp_path / "a.hdr", np.zeros((2, 8), dtype=np.float32))


VENICE = Path(__file__).resolve().parents[2] / "assets" / "envmaps" / "venice_sunset_1k.hdr"
"""The shipped copy (CC0) of ../shared/data/envmaps/venice_sunset_1k.hdr."""


def test_shipped_venice_sunset_reads():
    path = VENICE
    img = read_hdr(path)
    assert img.shape == (512, 1024, 3) and img.dtype == np.float32
    assert np.all(np.isfinite(img)) and np.all(img > 0)
    assert img.max() > 100.0  # an HDR map: the sun is far brighter than 1


def test_shipped_venice_sunset_matches_imageio():
    path = VENICE
    iio = pytest.importorskip("imageio.v3")
    try:
        ref = np.asarray(iio.imread(path), dtype=np.float32)
    except Exception as e:  # imageio needs the freeimage or opencv plugin for .hdr
        pytest.skip(f"imageio cannot read .hdr in this environment ({type(e).__name__})")
    img = read_hdr(path)
    assert ref.shape == img.shape
    # Readers differ in the mantissa offset ((m + 0.5) vs m): up to 1 bin of the pixel.
    np.testing.assert_allclose(ref, img, rtol=0.01, atol=img.max(-1, keepdims=True) / 128)


def test_shipped_venice_sunset_sh9_irradiance_near_brute_force():
    env = EnvironmentMap.from_file(VENICE)
    small = EnvironmentMap(  # 8×8 box filter: 64×128, so the brute force stays cheap
        env.radiance.reshape(64, 8, 128, 8, 3).mean(dim=(1, 3))
    )
    n = _normals(200)
    ref = _brute_irradiance(small, n)
    err = (small.irradiance(n) - ref).norm(dim=-1) / ref.norm(dim=-1)
    # Ramamoorthi & Hanrahan report a few percent average error for real maps; a sunset's sun
    # makes the worst normals (facing away from it) worse.
    assert err.mean() < 0.05
    # The map's own SH irradiance hardly changes with the box filter (low frequencies).
    full = env.irradiance(n)
    assert ((full - small.irradiance(n)).norm(dim=-1) / ref.norm(dim=-1)).max() < 0.01


# ---------------------------------------------------------------------------------------------
# Geometry, lookup, rotation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(32, 64), (7, 13), (1, 1), (3, 200)])
def test_solid_angles_sum_to_4pi(h, w):
    env = EnvironmentMap(torch.zeros(h, w, 3))
    sa = env.solid_angles()
    assert sa.shape == (h, w) and bool((sa > 0).all())
    assert abs(float(sa.double().sum()) / (4 * math.pi) - 1) < 1e-3
    if h >= 7:  # close to the small-patch estimate sin θ Δθ Δφ
        theta = torch.acos(env.direction_of_pixels()[..., 1].double())
        approx = torch.sin(theta) * (math.pi / h) * (2 * math.pi / w)
        torch.testing.assert_close(sa.double(), approx, rtol=0.05, atol=0.0)


def test_pixel_directions_follow_the_convention():
    env = EnvironmentMap(torch.zeros(32, 64, 3))
    d = env.direction_of_pixels()
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(32, 64))
    assert bool((d[0, :, 1] > 0.99).all()) and bool((d[-1, :, 1] < -0.99).all())  # row 0 is up
    eq = (d[15] + d[16]) / 2  # the equator, between the two middle rows
    # Columns read +z, −x, −z, +x: the centre looks towards −z, three quarters towards +x.
    for col, want in [(0, (0, 0, 1)), (16, (-1, 0, 0)), (32, (0, 0, -1)), (48, (1, 0, 0))]:
        mid = _unit((eq[col - 1] + eq[col]) / 2 if col else (eq[-1] + eq[0]) / 2)
        torch.testing.assert_close(mid, torch.tensor(want, dtype=torch.float32), atol=1e-6,
                                   rtol=0)


def test_lookup_returns_pixel_values_at_pixel_centres():
    g = torch.Generator().manual_seed(1)
    env = EnvironmentMap(torch.rand(32, 64, 3, generator=g) * 10)
    got = env.lookup(env.direction_of_pixels())
    torch.testing.assert_close(got, env.radiance, rtol=1e-5, atol=1e-5)
    # Unnormalised directions and a flat batch work too.
    torch.testing.assert_close(env.lookup(3 * env.direction_of_pixels()[5]), env.radiance[5],
                               rtol=1e-5, atol=1e-5)


def test_lookup_interpolates_and_wraps_in_longitude():
    img = torch.zeros(4, 8, 3)
    img[:, 0] = 1.0
    img[:, 7] = 3.0
    env = EnvironmentMap(img)
    # Straight towards +z is φ = ±π, the seam between column 7 and column 0: their mean.
    torch.testing.assert_close(env.lookup(torch.tensor([[0.0, 0.0, 1.0]])),
                               torch.full((1, 3), 2.0))
    # Halfway between two row centres: the mean of the rows; beyond the first and last row
    # centres the edge row's value (clamped, no interpolation over the pole).
    rows = EnvironmentMap(torch.arange(4.0)[:, None, None].expand(4, 8, 3))
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.3, 1.0, 0.1], [0.0, -1.0, 0.0]])
    torch.testing.assert_close(rows.lookup(dirs), torch.tensor([1.5, 0.5, 0.0, 3.0])[:, None]
                               .expand(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        env.lookup(torch.tensor([[float("nan"), 0.0, 1.0]]))


def _rot_y(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def test_rotation_by_90_degrees_moves_a_spot_a_quarter_width():
    img = torch.zeros(32, 64, 3)
    img[10, 5] = 100.0
    env = EnvironmentMap(img)
    for yaw, col in [(90.0, (5 - 16) % 64), (-90.0, 5 + 16), (360.0, 5), (180.0, 5 + 32)]:
        spot = env.rotated(yaw).radiance[..., 0]
        assert float(spot.sum()) == 100.0
        assert (spot == 100.0).nonzero().tolist() == [[10, col]], yaw
    # As documented: the new map seen along R d is the old map seen along d (R: right-hand
    # rotation about +y), at every pixel centre.
    g = torch.Generator().manual_seed(2)
    env = EnvironmentMap(torch.rand(32, 64, 3, generator=g))
    d = env.direction_of_pixels().reshape(-1, 3)
    turned = env.rotated(90.0)
    torch.testing.assert_close(turned.lookup(d @ _rot_y(90.0).T), env.lookup(d), rtol=1e-4,
                               atol=1e-4)
    # …and irradiance turns with it.
    n = _normals(16).float()
    torch.testing.assert_close(turned.irradiance(n @ _rot_y(90.0).T), env.irradiance(n),
                               rtol=1e-4, atol=1e-4)


def test_fractional_rotation_interpolates_columns():
    img = torch.zeros(2, 8, 3)
    img[:, 3] = 8.0
    half_pixel = 360.0 / 8 / 2
    out = EnvironmentMap(img).rotated(half_pixel).radiance[0, :, 0]
    torch.testing.assert_close(out, torch.tensor([0, 0, 4.0, 4.0, 0, 0, 0, 0]))


# ---------------------------------------------------------------------------------------------
# Spherical-harmonic irradiance
# ---------------------------------------------------------------------------------------------


def test_constant_map_irradiance_is_pi_times_radiance():
    radiance = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    env = EnvironmentMap.constant(radiance, height=32)
    n = _normals()
    e = env.irradiance(n)
    # ∫ L max(n·ω, 0) dω = π L for every normal.
    torch.testing.assert_close(e, (math.pi * radiance).expand_as(e), rtol=1e-3, atol=0)
    # Diffuse: albedo / π · E = albedo · L.
    albedo = torch.tensor([0.8, 0.4, 0.2], dtype=torch.float64)
    torch.testing.assert_close(env.diffuse(n, albedo), (albedo * radiance).expand_as(e),
                               rtol=1e-3, atol=0)
    # Only the constant coefficient: L00 = L · Y00 · 4π.
    sh = env.sh9().double()
    torch.testing.assert_close(sh[0], radiance * 2 * math.sqrt(math.pi), rtol=1e-6, atol=0)
    assert float(sh[1:].abs().max()) < 1e-5


def test_negative_control_without_cosine_lobe_factors():
    # Drop Â_l (all 1): E = L00 · Y00 = L, not π L — the closed-form check must catch it.
    env = EnvironmentMap.constant(1.5, height=32)
    n = _normals()
    want = torch.full((len(n), 3), math.pi * 1.5, dtype=torch.float64)
    torch.testing.assert_close(sh9_irradiance(env.sh9(), n, COSINE_LOBE), want, rtol=1e-3,
                               atol=0)
    wrong = sh9_irradiance(env.sh9(), n, lobe=(1.0, 1.0, 1.0))
    with pytest.raises(AssertionError):
        torch.testing.assert_close(wrong, want, rtol=1e-3, atol=0)
    torch.testing.assert_close(wrong, want / math.pi, rtol=1e-3, atol=0)


def test_upper_hemisphere_irradiance_closed_form():
    radiance = 2.0
    img = torch.zeros(32, 64, 3)
    img[:16] = radiance  # rows 0–15 are exactly y > 0 (even H: the equator is a pixel edge)
    env = EnvironmentMap(img)
    pil = math.pi * radiance

    def irr(n):
        return env.irradiance(torch.tensor([n], dtype=torch.float64))[0]

    # Exact irradiance from a uniform upper hemisphere: E(n) = π L (1 + n_y) / 2 — π L facing
    # up, 0 facing down, π L / 2 for any horizontal normal. Order-2 SH reproduce it *exactly*:
    # the hemisphere's even bands l ≥ 2 vanish (∫₀¹ P_l = 0) and Â_l = 0 for odd l > 1, so
    # nothing is truncated; and sh9() integrates the piecewise-constant map exactly. Hence a
    # tight tolerance rather than the ~10 % one that truncation of a general map would need.
    tol = 1e-4 * pil
    assert abs(irr([0, 1, 0]) - pil).max() < tol
    assert abs(irr([0, -1, 0])).max() < tol
    for n in ([1, 0, 0], [0, 0, -1], [-0.6, 0, 0.8]):
        assert abs(irr(n) - pil / 2).max() < tol
    n = _normals()
    want = (pil * (1 + n[:, 1]) / 2)[:, None].expand(-1, 3)
    torch.testing.assert_close(env.irradiance(n), want, rtol=0, atol=tol)
    # The brute-force integral agrees to its own (pixel-centre quadrature) accuracy.
    torch.testing.assert_close(_brute_irradiance(env, n), want, rtol=0, atol=3e-3 * pil)


def test_sky_irradiance_near_brute_force():
    env = EnvironmentMap.sky(height=32)
    n = _normals()
    ref = _brute_irradiance(env, n)
    err = (env.irradiance(n) - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert float(err.max()) < 0.03  # a smooth sky: order-2 truncation costs little


# ---------------------------------------------------------------------------------------------
# Files and constructors
# ---------------------------------------------------------------------------------------------


def test_from_file_hdr_and_srgb_png(tmp_path):
    img = _hdr_image()
    write_hdr(tmp_path / "a.hdr", img)
    env = EnvironmentMap.from_file(tmp_path / "a.hdr")
    np.testing.assert_array_equal(env.radiance.numpy(), read_hdr(tmp_path / "a.hdr"))
    iio = pytest.importorskip("imageio.v3")
    srgb = np.zeros((4, 8, 3), dtype=np.uint8)
    srgb[..., 0], srgb[..., 1], srgb[..., 2] = 188, 255, 0
    iio.imwrite(tmp_path / "b.png", srgb)
    env = EnvironmentMap.from_file(tmp_path / "b.png")
    want = srgb_to_linear(torch.tensor([188, 255, 0]) / 255.0)
    torch.testing.assert_close(env.radiance, want.float().expand(4, 8, 3))
    assert abs(float(env.radiance[0, 0, 0]) - 0.5) < 0.01  # sRGB 188 ≈ linear 0.5


def test_from_file_errors(tmp_path):
    with pytest.raises(EnvMapError, match="extension"):
        EnvironmentMap.from_file(tmp_path / "a.tga")
    with pytest.raises(FileNotFoundError):
        EnvironmentMap.from_file(tmp_path / "missing.hdr")
    bad = _write(tmp_path, "bad.png", b"not a png")
    with pytest.raises(EnvMapError, match=re.escape(str(bad))):
        EnvironmentMap.from_file(bad)


def test_constructors_validate():
    env = EnvironmentMap.constant((1.0, 2.0, 3.0), height=8)
    assert env.radiance.shape == (8, 16, 3) and (env.height, env.width) == (8, 16)
    with pytest.raises(ValueError, match="H, W, 3"):
        EnvironmentMap(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="NaN"):
        EnvironmentMap(torch.full((4, 8, 3), float("inf")))
    plain = EnvironmentMap.sky(height=16)
    assert float(plain.radiance[-1].max()) < 1.0  # the ground
    # A sun disc at the zenith, smaller than a pixel at this size and larger at a finer one:
    # either way its power (radiance × disc solid angle) is kept, so its irradiance is too.
    cap = 2 * math.pi * (1 - math.cos(math.radians(5.0)))
    up = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    for height in (16, 128):
        sky = EnvironmentMap.sky(height=height, sun_dir=(0.0, 2.0, 0.0), sun_radiance=100.0)
        sun = (sky.radiance - EnvironmentMap.sky(height=height).radiance)[..., 0] > 1.0
        assert bool(sun[0].any()) and not bool(sun[height // 4:].any())
        power = float((sky.radiance[..., 0] * sky.solid_angles())[sun].sum())
        assert abs(power / (100.0 * cap) - 1) < 1e-5
        gain = float(_brute_irradiance(sky, up)[0, 0]
                     - _brute_irradiance(EnvironmentMap.sky(height=height), up)[0, 0])
        assert abs(gain / (100.0 * cap) - 1) < 0.03  # cos ≈ 1 over the disc, minus sky covered
        # (Order-2 SH overshoot a small source in its own direction by up to 1/16 — the
        # truncation, not the sky: Σ_l≤2 Â_l (2l + 1)/4π = 17/16.)
        gain_sh = float(sky.irradiance(up)[0, 0] - EnvironmentMap.sky(height=height)
                        .irradiance(up)[0, 0])
        assert 1.0 < gain_sh / (100.0 * cap) < 17 / 16


def test_light_weights_keep_the_energy_and_land_in_the_right_cells():
    from datasets.olat import fibonacci_sphere

    env = EnvironmentMap.from_file(VENICE)
    dirs = fibonacci_sphere(64).double()
    w = env.light_weights(dirs)
    total = (env.radiance.double() * env.solid_angles().double()[..., None]).sum((0, 1))
    assert torch.allclose(w.sum(0), total, rtol=1e-9)  # energy kept exactly (the sun included)
    # The sun's cell gets most of the energy: its light is the one nearest the brightest pixel.
    brightest = env.radiance.sum(-1).argmax()
    sun_dir = env.direction_of_pixels().reshape(-1, 3)[brightest].double()
    assert w.sum(-1).argmax() == (dirs @ sun_dir).argmax()
    # Constant map: each light gets its cell's solid angle, about 4π/64.
    flat = EnvironmentMap.constant(1.0, height=64).light_weights(dirs)[:, 0]
    assert abs(float(flat.sum()) - 4 * math.pi) < 1e-6
    assert float(flat.std() / flat.mean()) < 0.15


def test_exr_environment_maps_load_like_hdr(tmp_path):
    from renderer.exr import write_exr

    hdr = EnvironmentMap.from_file(VENICE)
    small = hdr.radiance[::8, ::8].numpy()
    write_exr(tmp_path / "venice.exr", small)
    env = EnvironmentMap.from_file(tmp_path / "venice.exr")
    assert np.array_equal(env.radiance.numpy(), small)  # float32 EXR: exact
    (tmp_path / "bad.exr").write_bytes(b"not an exr")
    with pytest.raises(EnvMapError, match="bad.exr"):
        EnvironmentMap.from_file(tmp_path / "bad.exr")
