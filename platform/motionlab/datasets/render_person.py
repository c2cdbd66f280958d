"""Drawing for the Penn Action look-alike: a clothed stick-body person, action props, backgrounds, lighting.

Everything here works on 2-D pixel coordinates of the 13 Penn Action joints, so the same drawing
serves both the procedural motions (projected from 3-D) and real annotations (``labels=`` mode).
The aim is frames an image tokenizer and an SSIM successor rule can treat like video: a person
with body width and clothing that changes between clips, textured backgrounds that move with the
camera, and lighting that differs per clip. PIL ImageDraw and numpy only, so a 240x320 frame
costs a few milliseconds.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]

# Joint indices in Penn Action order (motionlab.modalities.JOINT_NAMES).
HEAD, L_SH, R_SH, L_EL, R_EL, L_WR, R_WR, L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANK, R_ANK = range(13)

# Limb capsules: (joint a, joint b, width in body heights, outfit colour). Widths are rough
# adult proportions so the silhouette reads as a body at 64 px.
LIMBS = (
    (L_SH, L_EL, 0.075, "shirt"), (L_EL, L_WR, 0.06, "forearm"),
    (R_SH, R_EL, 0.075, "shirt"), (R_EL, R_WR, 0.06, "forearm"),
    (L_HIP, L_KNEE, 0.11, "pants"), (L_KNEE, L_ANK, 0.085, "shin"),
    (R_HIP, R_KNEE, 0.11, "pants"), (R_KNEE, R_ANK, 0.085, "shin"),
)
HEAD_RADIUS = 0.072
TORSO_DEPTH = 0.17  # chest thickness: the torso's width when seen from the side
HAND_RADIUS = 0.035
FOOT_RADIUS = 0.045
BEHIND_SHADE = 0.78  # parts on the far side of the body are drawn darker
BAR_OVERHANG = 0.22  # barbell length beyond each hand, body heights


@dataclass(frozen=True)
class Outfit:
    skin: RGB
    hair: RGB
    shirt: RGB
    forearm: RGB  # shirt colour (long sleeves) or skin (short sleeves)
    pants: RGB
    shin: RGB  # pants colour (trousers) or skin (shorts)
    shoes: RGB


def hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return int(r * 255), int(g * 255), int(b * 255)


def random_outfit(rng: np.random.Generator) -> Outfit:
    skin = hsv(rng.uniform(0.03, 0.09), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95))
    hair = hsv(rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.55))
    shirt = hsv(rng.random(), rng.uniform(0.1, 0.95), rng.uniform(0.25, 1.0))
    pants = hsv(rng.random(), rng.uniform(0.05, 0.8), rng.uniform(0.1, 0.8))
    return Outfit(
        skin=skin, hair=hair, shirt=shirt,
        forearm=shirt if rng.random() < 0.45 else skin,
        pants=pants,
        shin=pants if rng.random() < 0.6 else skin,
        shoes=hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.05, 0.95)),
    )


def _shade(color: RGB, factor: float) -> RGB:
    return int(color[0] * factor), int(color[1] * factor), int(color[2] * factor)


def _disc(draw: ImageDraw.ImageDraw, c: np.ndarray, r: float, fill: RGB) -> None:
    r = max(r, 0.5)
    draw.ellipse((c[0] - r, c[1] - r, c[0] + r, c[1] + r), fill=fill)


def capsule(draw: ImageDraw.ImageDraw, a: np.ndarray, b: np.ndarray, width: float, fill: RGB) -> None:
    """A thick segment with round ends: PIL's wide lines have flat ends that look like cut-outs."""
    w = max(int(round(width)), 1)
    draw.line((float(a[0]), float(a[1]), float(b[0]), float(b[1])), fill=fill, width=w)
    _disc(draw, a, width / 2, fill)
    _disc(draw, b, width / 2, fill)


@dataclass(frozen=True)
class Prop:
    """An action's object (bat, barbell, rope ...), drawn behind, with, or in front of the body."""

    layer: str  # "back" (before the body), "torso" (after the torso, before the arms), "front"
    draw: Callable[[ImageDraw.ImageDraw], None]


def draw_person(
    img: Image.Image,
    pts: np.ndarray,  # (13, 2) pixel x, y
    scale: float,  # pixels per body height
    outfit: Outfit,
    *,
    depth: np.ndarray | None = None,  # (13,) toward the camera, body heights; None: order by `behind`
    known: np.ndarray | None = None,  # (13,) bool: joints whose position is annotated (label mode)
    behind: np.ndarray | None = None,  # (13,) bool: joints on the far side (label mode: invisible ones)
    facing: tuple[float, float] = (0.0, 1.0),  # body forward on (image right, toward camera)
    props: tuple[Prop, ...] = (),
) -> None:
    """Draw the person far-to-near so the near limbs cover the torso and the far limbs."""
    draw = ImageDraw.Draw(img)
    known = np.ones(13, bool) if known is None else known
    if depth is None:
        far = np.zeros(13, bool) if behind is None else behind
        depth = np.where(far, -1.0, 1.0)
    torso_idx = [L_SH, R_SH, L_HIP, R_HIP]
    torso_depth = float(np.mean(depth[torso_idx]))
    items: list[tuple[float, int, Callable[[], None]]] = []  # (depth, tie-break, draw)

    if all(known[torso_idx]):
        items.append((torso_depth, 0, lambda: _draw_torso(draw, pts, scale, outfit)))
        for prop in props:
            if prop.layer == "torso":
                items.append((torso_depth + 1e-3, 1, lambda p=prop: p.draw(draw)))
    for a, b, width, colour in LIMBS:
        if not (known[a] and known[b]):
            continue
        d = float(depth[a] + depth[b]) / 2
        shade = BEHIND_SHADE if d < torso_depth - 0.02 else 1.0
        fill = _shade(getattr(outfit, colour), shade)
        end = b in (L_WR, R_WR, L_ANK, R_ANK)
        end_fill = _shade(outfit.skin if b in (L_WR, R_WR) else outfit.shoes, shade)
        end_r = (HAND_RADIUS if b in (L_WR, R_WR) else FOOT_RADIUS) * scale

        def limb(a=a, b=b, w=width * scale, fill=fill, end=end, end_fill=end_fill, end_r=end_r) -> None:
            capsule(draw, pts[a], pts[b], w, fill)
            if end:
                _disc(draw, pts[b], end_r, end_fill)

        items.append((d, 2, limb))
    if known[HEAD]:
        neck_ok = known[L_SH] and known[R_SH]
        items.append((float(depth[HEAD]), 3,
                      lambda: _draw_head(draw, pts, scale, outfit, facing, neck_ok)))

    for prop in props:
        if prop.layer == "back":
            prop.draw(draw)
    for _, _, fn in sorted(items, key=lambda it: (it[0], it[1])):
        fn()
    for prop in props:
        if prop.layer == "front":
            prop.draw(draw)


def _draw_torso(draw: ImageDraw.ImageDraw, pts: np.ndarray, scale: float, outfit: Outfit) -> None:
    sh_mid = (pts[L_SH] + pts[R_SH]) / 2
    hip_mid = (pts[L_HIP] + pts[R_HIP]) / 2
    centre = (sh_mid + hip_mid) / 2
    quad = []
    for j in (L_SH, R_SH, R_HIP, L_HIP):
        out = pts[j] - centre
        n = np.linalg.norm(out)
        quad.append(tuple(pts[j] + (out / n * 0.03 * scale if n > 1e-6 else 0)))
    draw.polygon(quad, fill=outfit.shirt)
    capsule(draw, sh_mid, hip_mid, TORSO_DEPTH * scale, outfit.shirt)
    capsule(draw, pts[L_HIP], pts[R_HIP], 0.13 * scale, outfit.pants)


def _draw_head(draw: ImageDraw.ImageDraw, pts: np.ndarray, scale: float, outfit: Outfit,
               facing: tuple[float, float], neck_ok: bool) -> None:
    head = pts[HEAD]
    r = HEAD_RADIUS * scale
    up = np.array([0.0, -1.0])
    if neck_ok:
        neck = (pts[L_SH] + pts[R_SH]) / 2
        capsule(draw, neck, neck + (head - neck) * 0.7, 0.055 * scale, outfit.skin)
        v = head - neck
        if np.linalg.norm(v) > 1e-6:
            up = v / np.linalg.norm(v)
    _disc(draw, head, r, outfit.skin)
    side, toward = facing
    box = (head[0] - r * 1.04, head[1] - r * 1.04, head[0] + r * 1.04, head[1] + r * 1.04)
    if toward < -0.5:  # seen from behind: all hair
        _disc(draw, head, r * 1.02, outfit.hair)
        return
    # Hair cap centred on "up", turned toward the back of the head when the face is in profile.
    cap = _unit(up + np.array([-side * 0.9, 0.0]), up)
    centre = float(np.degrees(np.arctan2(cap[1], cap[0])))  # PIL angles run clockwise from +x, as y is down
    span = 95 if toward > 0.5 else 110
    draw.pieslice(box, centre - span, centre + span, fill=outfit.hair)
    if toward > 0.5:  # a face seen from the front: eyes keep it from reading as a ball
        e = r * 0.12
        for s in (-1, 1):
            c = head + np.array([s * r * 0.38, 0.0]) + up * (-0.05 * r)
            _disc(draw, c, e, _shade(outfit.hair, 0.5))


# ---------------------------------------------------------------------------------------------------
# Props, built from 2-D joints so they work for real annotations too.

def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else fallback


def _plate(d: ImageDraw.ImageDraw, c: np.ndarray, axis: np.ndarray, r: float, thin: float, fill: RGB) -> None:
    """An ellipse of radius r across `axis` and r * thin along it (a weight plate seen at an angle)."""
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    normal = np.array([-axis[1], axis[0]])
    ring = c + np.outer(np.cos(t) * r * thin, axis) + np.outer(np.sin(t) * r, normal)
    d.polygon([tuple(p) for p in ring], fill=fill)
    _disc(d, c, max(r * 0.25 * thin, 1.0), (30, 30, 34))


def action_props(action: str, pts: np.ndarray, scale: float, ground_y: float, phase: float,
                 rng_colour: RGB, bar: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Prop, ...]:
    """The object that makes an action recognisable; `phase` in [0, 1) drives the jump rope.

    `bar` gives a barbell's two ends in pixels when they are known in 3-D; from 2-D joints alone
    the bar's direction is guessed from the wrists.
    """
    s = scale
    hands = (pts[L_WR] + pts[R_WR]) / 2
    elbows = (pts[L_EL] + pts[R_EL]) / 2
    sh_mid = (pts[L_SH] + pts[R_SH]) / 2
    hip_mid = (pts[L_HIP] + pts[R_HIP]) / 2
    down = np.array([0.0, 1.0])
    metal = (150, 150, 158)
    dark = (30, 30, 34)

    def barbell(plate: float) -> Callable[[ImageDraw.ImageDraw], None]:
        if bar is not None:
            a, b = bar
        else:  # from 2-D wrists: a short wrist gap means the bar points at the camera
            gap = float(np.linalg.norm(pts[L_WR] - pts[R_WR]))
            axis = _unit(pts[L_WR] - pts[R_WR], np.array([1.0, 0.0]))
            half = gap / 2 + BAR_OVERHANG * s * min(gap / (0.45 * s), 1.0)
            a, b = hands + axis * half, hands - axis * half
        # Plates are discs on the bar's axis: edge-on when the bar crosses the image, round when it
        # points at the camera. `span` is how much of the bar's true length the image shows.
        span = min(float(np.linalg.norm(a - b)) / (0.9 * s), 1.0)
        axis = _unit(a - b, np.array([1.0, 0.0]))

        def fn(d: ImageDraw.ImageDraw) -> None:
            capsule(d, a, b, max(0.018 * s, 1.5), metal)
            for end in (a, b):
                _plate(d, end, axis, plate * s, max(np.sqrt(1 - span * span), 0.18), rng_colour)
        return fn

    if action == "baseball_swing":
        v = _unit(hands - elbows, -down)

        def bat(d: ImageDraw.ImageDraw) -> None:
            tip = hands + v * 0.42 * s
            d.line((*hands, *tip), fill=(190, 150, 100), width=max(int(0.035 * s), 2))
            _disc(d, tip, 0.024 * s, (190, 150, 100))
        return (Prop("front", bat),)
    if action == "baseball_pitch":
        return (Prop("front", lambda d: _disc(d, pts[L_WR], 0.05 * s, (110, 70, 35))),)
    if action == "golf_swing":
        v = _unit(hands - sh_mid, down)

        def club(d: ImageDraw.ImageDraw) -> None:
            tip = hands + v * 0.48 * s
            d.line((*hands, *tip), fill=(200, 200, 205), width=max(int(0.012 * s), 1))
            _disc(d, tip, 0.025 * s, (60, 60, 60))
        return (Prop("front", club),)
    if action in ("tennis_forehand", "tennis_serve"):
        v = _unit(pts[R_WR] - pts[R_EL], -down)

        def racket(d: ImageDraw.ImageDraw) -> None:
            neck = pts[R_WR] + v * 0.13 * s
            centre = pts[R_WR] + v * 0.22 * s
            d.line((*pts[R_WR], *neck), fill=dark, width=max(int(0.02 * s), 1))
            r = 0.085 * s
            d.ellipse((centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r), outline=rng_colour,
                      fill=(225, 225, 215), width=max(int(0.015 * s), 1))
        return (Prop("front", racket),)
    if action == "bench_press":
        def bench(d: ImageDraw.ImageDraw) -> None:
            a, b = sh_mid + down * 0.07 * s, hip_mid + down * 0.07 * s
            capsule(d, a, b, 0.08 * s, (70, 60, 55))
            for p in (a, b):
                d.line((p[0], p[1], p[0], ground_y), fill=dark, width=max(int(0.025 * s), 1))
        return (Prop("back", bench), Prop("front", barbell(0.1)))
    if action in ("clean_and_jerk", "squat"):
        return (Prop("front", barbell(0.13 if action == "clean_and_jerk" else 0.11)),)
    if action == "pullup":
        def bar(d: ImageDraw.ImageDraw) -> None:
            y = hands[1] - 0.01 * s
            x0, x1 = hands[0] - 0.5 * s, hands[0] + 0.5 * s
            d.line((x0, y, x1, y), fill=metal, width=max(int(0.022 * s), 2))
            for x in (x0, x1):
                d.line((x, y, x, ground_y), fill=dark, width=max(int(0.03 * s), 2))
        return (Prop("back", bar),)
    if action in ("pushup", "situp"):
        xs = pts[:, 0]

        def mat(d: ImageDraw.ImageDraw) -> None:
            d.rectangle((xs.min() - 0.1 * s, ground_y - 0.012 * s, xs.max() + 0.1 * s, ground_y + 0.02 * s),
                        fill=rng_colour)
        return (Prop("back", mat),)
    if action == "bowl":
        return (Prop("front", lambda d: _disc(d, pts[R_WR], 0.06 * s, rng_colour)),)
    if action == "strum_guitar":
        def guitar(d: ImageDraw.ImageDraw) -> None:
            body = hip_mid + (sh_mid - hip_mid) * 0.3 + (pts[R_HIP] - pts[L_HIP]) * 0.3
            rx, ry = 0.13 * s, 0.1 * s
            neck_end = pts[L_WR] + _unit(pts[L_WR] - body, np.array([1.0, 0.0])) * 0.06 * s
            d.line((*body, *neck_end), fill=(80, 50, 25), width=max(int(0.03 * s), 2))
            d.ellipse((body[0] - rx, body[1] - ry, body[0] + rx, body[1] + ry), fill=rng_colour)
            _disc(d, body, 0.03 * s, dark)
        return (Prop("torso", guitar),)
    if action == "jump_rope":
        angle = 2 * np.pi * phase
        centre = (sh_mid + (pts[L_ANK] + pts[R_ANK]) / 2) / 2
        height = 0.62 * s
        width = max(abs(float(pts[L_WR][0] - pts[R_WR][0])) / 2, 0.12 * s)
        apex = centre + np.array([0.0, -np.cos(angle) * height])  # over the head at phase 0
        layer = "front" if np.sin(angle) > 0 else "back"

        def rope(d: ImageDraw.ImageDraw) -> None:
            t = np.linspace(0, 1, 17)[:, None]
            a, b = pts[L_WR], pts[R_WR]
            ctrl = 2 * apex - (a + b) / 2
            curve = (1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t ** 2 * b
            curve[:, 0] += np.sin(np.pi * t[:, 0]) * width * 0.15
            d.line([tuple(p) for p in curve], fill=dark, width=max(int(0.012 * s), 1))
        return (Prop(layer, rope),)
    return ()


# ---------------------------------------------------------------------------------------------------
# Backgrounds: a wall texture above a floor texture, rendered once per clip on a canvas larger than
# the frame so a camera pan or zoom can crop a moving window from it.

def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return np.array(hsv(rng.random(), rng.uniform(0.05, 0.7), rng.uniform(0.25, 0.95)), np.float32)


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = _random_colour(rng), _random_colour(rng)
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * np.cos(theta) + yy * np.sin(theta))
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    return a + (b - a) * t[..., None]


def _value_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w, 3), np.float32)
    base = _random_colour(rng)
    for cells, amp in ((int(rng.integers(3, 7)), 70.0), (int(rng.integers(12, 30)), 25.0)):
        grid = rng.normal(0, 1, (cells, max(cells * w // h, 2), 3)).astype(np.float32)
        grid = np.clip(grid * 60 + 128, 0, 255).astype(np.uint8)
        up = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), np.float32) - 128
        out += up * (amp / 60)
    return base + out


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = _random_colour(rng), _random_colour(rng)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(8, 40)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
    t = (np.sin(2 * np.pi * phase) > rng.uniform(-0.5, 0.5)).astype(np.float32)
    if rng.random() < 0.5:  # soft stripes (curtains, blinds) rather than painted ones
        t = 0.5 + 0.5 * np.sin(2 * np.pi * phase)
    return a + (b - a) * t[..., None]


def _tiles(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    size = int(rng.integers(14, 48))
    grout = int(rng.integers(1, 4))
    base, grout_c = _random_colour(rng), _random_colour(rng) * 0.6
    rows, cols = h // size + 2, w // size + 2
    jitter = rng.normal(0, 14, (rows, cols, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    offset = (yy // size % 2) * (size // 2) if rng.random() < 0.5 else 0  # brick bond or grid
    tx, ty = (xx + offset) // size, yy // size
    out = base + jitter[ty, tx]
    line = ((xx + offset) % size < grout) | (yy % size < grout)
    out[line] = grout_c
    return out


def _shapes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = Image.fromarray(np.clip(_gradient(rng, h, w), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 26))):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * w, y0 + rng.uniform(0.05, 0.5) * h
        fill = tuple(int(c) for c in _random_colour(rng))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=fill)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 6.0))))
    return np.asarray(img, np.float32)


TEXTURES = (_value_noise, _stripes, _tiles, _shapes)


def make_background(rng: np.random.Generator, h: int, w: int, floor_y: float) -> Image.Image:
    """Wall above `floor_y`, floor below, each a gradient blended with one random texture plus grain."""

    def surface() -> np.ndarray:
        tex = TEXTURES[int(rng.integers(len(TEXTURES)))](rng, h, w)
        mix = rng.uniform(0.35, 0.9)
        return mix * tex + (1 - mix) * _gradient(rng, h, w)

    wall = surface()
    floor_row = int(np.clip(floor_y, 0, h))
    if floor_row < h:
        floor = surface() * rng.uniform(0.55, 0.95)
        wall[floor_row:] = floor[floor_row:]
        wall[max(floor_row - 1, 0):floor_row + 1] *= 0.7  # skirting line where wall meets floor
    grain = rng.normal(0, rng.uniform(2, 8), (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(wall + grain, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------
# Lighting and sensor noise.

def lighting_lut(brightness: float, contrast: float, cast: np.ndarray) -> list[int]:
    """A 768-entry PIL point table: contrast about mid-grey, then brightness times a colour cast."""
    x = np.arange(256, dtype=np.float32) / 255.0
    out = []
    for c in range(3):
        y = ((x - 0.5) * contrast + 0.5) * brightness * float(cast[c])
        out.extend(np.clip(np.round(y * 255), 0, 255).astype(int).tolist())
    return out


def noise_bank(rng: np.random.Generator, h: int, w: int, sigma: float, count: int = 3) -> list[np.ndarray]:
    """A few pre-drawn noise fields; frames pick one and shift it, which is far cheaper than drawing
    a fresh Gaussian field per frame and looks the same after JPEG."""
    return [np.round(rng.normal(0, sigma, (h, w, 3))).astype(np.int16) for _ in range(count)]


def add_noise(img: Image.Image, bank: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    field = bank[int(rng.integers(len(bank)))]
    field = np.roll(field, (int(rng.integers(field.shape[0])), int(rng.integers(field.shape[1]))), (0, 1))
    arr = np.asarray(img, np.int16) + field
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
