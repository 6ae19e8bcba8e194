"""Analytic shapes, procedural textures and affine poses: what the generated worlds are drawn from.

Shapes are unions of primitives (ellipses and convex polygons) minus optional holes, defined in
their own "sprite" coordinates and tested at pixel centres, so a shape renders exactly at any
pose, scale and sub-pixel position. Poses are 3x3 affine matrices mapping sprite coordinates
(x, y, 1) to image coordinates; ground-truth flow follows from the poses of consecutive frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Ellipse:
    """Points with ((x - cx) / rx)^2 + ((y - cy) / ry)^2 <= 1 after rotating by -angle about (cx, cy)."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u, v = c * dx + s * dy, -s * dx + c * dy
        return (u / self.rx) ** 2 + (v / self.ry) ** 2 <= 1.0

    def extent(self) -> float:
        return float(np.hypot(self.cx, self.cy) + max(self.rx, self.ry))


@dataclass(frozen=True)
class Polygon:
    """A convex polygon; vertices (N, 2) in either winding order."""

    vertices: tuple

    def __post_init__(self):
        v = np.asarray(self.vertices, dtype=float)
        if 0.5 * np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1]) < 0:
            v = v[::-1]  # counter-clockwise, so "inside" is the left of every edge
        edges = tuple((x0, y0, x1 - x0, y1 - y0) for (x0, y0), (x1, y1) in zip(v, np.roll(v, -1, axis=0)))
        object.__setattr__(self, "_edges", edges)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = np.ones(np.broadcast(x, y).shape, dtype=bool)
        for x0, y0, dx, dy in self._edges:
            inside &= dx * (y - y0) - dy * (x - x0) >= -1e-9
        return inside

    def extent(self) -> float:
        v = np.asarray(self.vertices, dtype=float)
        return float(np.hypot(v[:, 0], v[:, 1]).max())


@dataclass(frozen=True)
class Shape:
    """The union of ``parts`` minus the union of ``holes``, in sprite coordinates."""

    parts: tuple
    holes: tuple = ()

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        for part in self.parts:
            inside |= part.contains(x, y)
        for hole in self.holes:
            inside &= ~hole.contains(x, y)
        return inside

    def extent(self) -> float:
        """A radius about the sprite origin that holds the whole shape."""
        return max(p.extent() for p in self.parts)


def convex_polygon_on_circle(rng: np.random.Generator, n_points: int, radius: float, n_vertices: int) -> Polygon:
    """A convex polygon whose vertices are ``n_vertices`` of ``n_points`` evenly spaced points on a circle."""
    chosen = np.sort(rng.choice(n_points, size=n_vertices, replace=False))
    angles = 2 * np.pi * chosen / n_points
    return Polygon(tuple(map(tuple, np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1))))


def random_convex_polygon(rng: np.random.Generator, radius: float, n_vertices: int) -> Polygon:
    """A fat random convex polygon about the origin: sorted random angles plus 5 evenly spread ones,
    on an ellipse of mean radius ``radius`` (aspect 0.7-1), randomly rotated."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    angles = np.sort(np.concatenate([angles, np.linspace(0, 2 * np.pi, 5, endpoint=False) + rng.uniform(0, 1)]))
    aspect = rng.uniform(0.7, 1.0)
    rot = rng.uniform(0, np.pi)
    pts = np.stack([radius * np.cos(angles), radius * aspect * np.sin(angles)], axis=1)
    c, s = np.cos(rot), np.sin(rot)
    return Polygon(tuple(map(tuple, pts @ np.array([[c, s], [-s, c]]))))


# -------------------------------------------------------------------------------------- textures


@lru_cache(maxsize=256)
def _noise_grid(seed: int, cells: int) -> np.ndarray:
    grid = np.random.default_rng(seed).random((cells + 1, cells + 1)).astype(np.float32)
    grid.flags.writeable = False
    return grid


@dataclass(frozen=True)
class Texture:
    """A colour pattern in sprite (or world) coordinates.

    kind: "solid", "stripes" (period, angle), "spots" (period, radius) or "noise" (period: the
    cell size of bilinear value noise). colours: two RGB colours (the second for the pattern).
    """

    kind: str
    colours: tuple
    period: float = 6.0
    angle: float = 0.0
    seed: int = 0
    noise_cells: int = 64

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """RGB float colours (..., 3) at sprite coordinates (x, y)."""
        a, b = (np.asarray(c, dtype=np.float32) for c in self.colours)
        if self.kind == "solid":
            t = np.zeros(np.shape(x), dtype=np.float32)
        elif self.kind == "stripes":
            phase = (np.cos(self.angle) * x + np.sin(self.angle) * y) / self.period
            t = (np.sin(2 * np.pi * phase) > 0).astype(np.float32)
        elif self.kind == "spots":
            gx, gy = np.mod(x, self.period) - self.period / 2, np.mod(y, self.period) - self.period / 2
            t = (gx ** 2 + gy ** 2 <= (0.3 * self.period) ** 2).astype(np.float32)
        elif self.kind == "noise":
            grid = _noise_grid(self.seed, self.noise_cells)
            u = np.mod(x / self.period, self.noise_cells)
            v = np.mod(y / self.period, self.noise_cells)
            i, j = np.floor(v).astype(int), np.floor(u).astype(int)
            fv, fu = v - i, u - j
            t = (grid[i, j] * (1 - fu) * (1 - fv) + grid[i, j + 1] * fu * (1 - fv)
                 + grid[i + 1, j] * (1 - fu) * fv + grid[i + 1, j + 1] * fu * fv)
        else:
            raise ValueError(f"Texture: unknown kind {self.kind!r}; expected solid, stripes, spots or noise")
        return a + (b - a) * t[..., None]


def random_texture(rng: np.random.Generator, kinds=("solid", "stripes", "spots", "noise"),
                   low: int = 40, high: int = 256) -> Texture:
    """A random texture of one of ``kinds`` with two random colours in [low, high)^3."""
    kind = str(rng.choice(kinds))
    a = rng.integers(low, high, size=3)
    b = np.clip(a + rng.integers(-90, 91, size=3), 0, 255)
    return Texture(kind, (tuple(int(c) for c in a), tuple(int(c) for c in b)), period=float(rng.uniform(3, 8)),
                   angle=float(rng.uniform(0, np.pi)), seed=int(rng.integers(2**31)))


# -------------------------------------------------------------------------------------- poses


def affine(tx: float = 0.0, ty: float = 0.0, rotation: float = 0.0, scale_x: float = 1.0, scale_y: float = 1.0,
           shear: float = 0.0) -> np.ndarray:
    """3x3 matrix: translate(tx, ty) @ rotate(rotation) @ shear(shear) @ scale(scale_x, scale_y)."""
    c, s = np.cos(rotation), np.sin(rotation)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    shr = np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1.0]])
    scl = np.diag([scale_x, scale_y, 1.0])
    out = rot @ shr @ scl
    out[0, 2], out[1, 2] = tx, ty
    return out


def apply(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a 3x3 affine (or a stack (..., 3, 3) broadcast against x, y) to coordinates."""
    m = np.asarray(matrix)
    return (m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 2],
            m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 2])


@dataclass
class Sprite:
    """One object of a scene: its shape, texture, class and its pose and depth in every frame.

    poses: (T, 3, 3) sprite -> image; depth: (T,) float, smaller is nearer (drawn on top).
    role: "object" (evaluated) or a helper ("sticker", "glued", "occluder").
    """

    shape: Shape
    texture: Texture
    poses: np.ndarray
    depth: np.ndarray
    type: int | None = None
    role: str = "object"
    meta: dict = field(default_factory=dict)
