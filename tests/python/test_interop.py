"""Arrays of other libraries (python/normexp/_interop.py): torch tensors and JAX arrays in, the same type
out, bit for bit the NumPy path's numbers, the caller's memory read and written in place.

torch and JAX are not in the test extra; .ci/run installs both (torch 2.13.0, jax[cpu]) so these tests
run in CI. A plain DLPack object (no torch, no JAX) is covered by a small class here.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import normexp
from normexp import _api, _core

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch (.ci/run installs 2.13.0)")
ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes (in the test extra) is needed for bfloat16")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "strided", "transposed"]


# ---- helpers --------------------------------------------------------------------------------------------
def make(shape, dtype, layout, seed=0, scale=3.0):
    """A tensor of shape with the given memory layout: contiguous, every other element of a wider
    buffer (strided), or a transposed view of the last two axes (transposed)."""
    g = torch.Generator().manual_seed(seed)
    if layout == "contiguous":
        t = torch.randn(shape, generator=g, dtype=torch.float64)
    elif layout == "strided":
        t = torch.randn(shape[:-1] + (2 * shape[-1],), generator=g, dtype=torch.float64)[..., ::2]
    else:
        t = torch.randn(shape[:-2] + (shape[-1], shape[-2]), generator=g, dtype=torch.float64).transpose(-1, -2)
    t = (t * scale).to(dtype) if layout == "contiguous" else _keep_layout(t * scale, dtype, layout)
    assert t.shape == shape
    assert t.is_contiguous() == (layout == "contiguous")
    return t


def _keep_layout(t, dtype, layout):
    """t converted to dtype without making it contiguous (.to() keeps strides of dense views only)."""
    if layout == "strided":
        base = torch.empty(t.shape[:-1] + (2 * t.shape[-1],), dtype=dtype)
        view = base[..., ::2]
    else:
        base = torch.empty(t.shape[:-2] + (t.shape[-1], t.shape[-2]), dtype=dtype)
        view = base.transpose(-1, -2)
    view.copy_(t)
    return view


def as_np(t):
    """The NumPy view of a tensor (bfloat16 as ml_dtypes.bfloat16): what the NumPy path is given."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def same(got, ref):
    """got (a tensor, or a tuple of them) equals the NumPy result ref bit for bit, dtype included."""
    if isinstance(ref, tuple):
        assert isinstance(got, tuple) and len(got) == len(ref)
        for g, r in zip(got, ref):
            same(g, r)
        return
    assert isinstance(got, torch.Tensor), type(got)
    r = np.asarray(ref)
    g = as_np(got)
    assert g.dtype == r.dtype and g.shape == r.shape
    if r.dtype.kind == "f" or r.dtype.name == "bfloat16":
        bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[r.dtype.itemsize]
        np.testing.assert_array_equal(g.view(bits), r.view(bits))
    else:
        np.testing.assert_array_equal(g, r)


def pointer(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


# ---- every entry point x dtype x layout: the NumPy path's result, as a tensor ------------------------------
ENTRY_POINTS = {
    "softmax": lambda f, x: f(x, axis=-1, temperature=0.7),
    "softmax_axis0": lambda f, x: f(x, axis=0),
    "log_softmax": lambda f, x: f(x, axis=-1),
    "logsumexp": lambda f, x: f(x, axis=-1),
    "logsumexp_keepdims_sign": lambda f, x: f(x, axis=0, keepdims=True, return_sign=True),
    "special.softmax": lambda f, x: f(x),
    "special.log_softmax": lambda f, x: f(x, axis=(0, 1)),
    "special.logsumexp": lambda f, x: f(x, axis=-1),
    "sample": lambda f, x: f(x, temperature=0.8, top_k=5, rng=np.random.default_rng(3)),
    "cross_entropy": lambda f, x: f(x, np.arange(x.shape[0]) % x.shape[-1], reduction="none"),
    "cross_entropy_mean": lambda f, x: f(x, np.arange(x.shape[0]) % x.shape[-1]),
}
FUNCS = {
    "softmax": normexp.softmax, "softmax_axis0": normexp.softmax, "log_softmax": normexp.log_softmax,
    "logsumexp": normexp.logsumexp, "logsumexp_keepdims_sign": normexp.logsumexp,
    "special.softmax": normexp.special.softmax, "special.log_softmax": normexp.special.log_softmax,
    "special.logsumexp": normexp.special.logsumexp, "sample": normexp.sample,
    "cross_entropy": normexp.cross_entropy, "cross_entropy_mean": normexp.cross_entropy,
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_reductions_and_sampling_match_numpy(entry, dtype, layout):
    x = make((7, 19), dtype, layout)
    call, f = ENTRY_POINTS[entry], FUNCS[entry]
    before = x.clone()
    same(call(f, x), call(f, as_np(x)))
    assert torch.equal(x, before)  # the input is never written


def test_one_dimensional_results_are_zero_dim_tensors():
    x = torch.randn(10)
    for r in (normexp.logsumexp(x), normexp.special.logsumexp(x), normexp.sample(x, rng=0),
              normexp.cross_entropy(x[None], torch.tensor([2]))):
        assert isinstance(r, torch.Tensor) and r.ndim == 0
    assert normexp.special.softmax(torch.tensor(1000.0)).item() == 1.0


ATT_DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ATT_DTYPES, ids=str)
def test_attention_matches_numpy(dtype, layout):
    # transposed: q, k, v are (B, L, H, D) buffers seen as (B, H, L, D), the layout of a fused QKV projection.
    def qkv(seed, length):
        if layout == "transposed":
            t = make((2, length, 3, 8), dtype, "contiguous", seed).transpose(1, 2)
            assert not t.is_contiguous()
            return t
        return make((2, 3, length, 8), dtype, layout, seed)

    q, k, v = qkv(1, 5), qkv(2, 9), qkv(3, 9)
    mask = torch.rand(5, 9, generator=torch.Generator().manual_seed(4)) > 0.3
    slopes = torch.tensor([0.5, 0.25, 0.125], dtype=torch.float64)
    kw = dict(is_causal=True, causal_alignment="bottom_right", return_lse=True)
    same(normexp.attention(q, k, v, mask=mask, alibi_slopes=slopes, **kw),
         normexp.attention(as_np(q), as_np(k), as_np(v), mask=mask.numpy(), alibi_slopes=slopes.numpy(), **kw))
    same(normexp.attention(q[0, 0], k[0, 0], v[0, 0]), normexp.attention(as_np(q[0, 0]), as_np(k[0, 0]), as_np(v[0, 0])))

    # merge_attention of two key blocks: lists of tensors in, tensors out.
    parts = [normexp.attention(q, k[:, :, s], v[:, :, s], return_lse=True) for s in (slice(0, 4), slice(4, 9))]
    outs, lses = [p[0] for p in parts], [p[1] for p in parts]
    assert all(isinstance(o, torch.Tensor) for o in outs + lses)
    same(normexp.merge_attention(outs, lses), normexp.merge_attention([o.numpy() for o in outs], [l.numpy() for l in lses]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_attention_16bit_tensors_like_numpy(dtype):
    # 16-bit tensors are read as they are (bfloat16 through an int16 view as ml_dtypes.bfloat16): the same
    # bits as the NumPy call, a tensor of q's dtype back; a mixed combination is refused alike.
    q = torch.randn(2, 4, 8).to(dtype)
    out = normexp.attention(q, q, q)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype
    ref = normexp.attention(as_np(q), as_np(q), as_np(q))
    assert out.view(torch.int16).numpy().tobytes() == ref.view(np.int16).tobytes()
    other = torch.bfloat16 if dtype == torch.float16 else torch.float16
    with pytest.raises(TypeError, match="float32 q with float16 or bfloat16 k and v") as e:
        normexp.attention(q, q.to(other), q.to(other))
    with pytest.raises(TypeError) as r:
        normexp.attention(as_np(q), as_np(q.to(other)), as_np(q.to(other)))
    assert str(e.value) == str(r.value)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fit_temperature_and_calibration_read_tensors(dtype):
    labels = torch.arange(40) % 6
    x = make((40, 6), dtype, "strided", scale=2.0)
    x[torch.arange(40), labels] += 2  # informative logits: the fitted temperature lies inside the bounds
    assert normexp.fit_temperature(x, labels) == normexp.fit_temperature(as_np(x), labels.numpy())
    p = normexp.softmax(x)
    assert normexp.calibration_error(p, labels) == normexp.calibration_error(as_np(p), labels.numpy())


def test_other_array_arguments_may_be_tensors():
    x = torch.randn(4, 6, dtype=torch.float64)
    where = torch.rand(4, 6) > 0.4
    b = torch.rand(4, 6, dtype=torch.float64) - 0.2
    same(normexp.softmax(x, where=where), normexp.softmax(x.numpy(), where=where.numpy()))
    same(normexp.logsumexp(x, b=b, return_sign=True), normexp.logsumexp(x.numpy(), b=b.numpy(), return_sign=True))
    same(normexp.special.logsumexp(x, b=b, return_sign=True),
         normexp.special.logsumexp(x.numpy(), b=b.numpy(), return_sign=True))
    # NumPy scores with tensor weights: the result follows the first foreign array argument.
    same(normexp.special.logsumexp(x.numpy(), b=torch.tensor(2.0)), normexp.special.logsumexp(x.numpy(), b=2.0))
    # Integer, bool and complex tensors take the NumPy path's rules.
    same(normexp.softmax(torch.arange(6)), normexp.softmax(np.arange(6)))
    z = torch.randn(5, dtype=torch.complex128)
    same(normexp.special.logsumexp(z), normexp.special.logsumexp(z.numpy()))


# ---- out= -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out_tensor_is_written_in_place(op, dtype):
    f = getattr(normexp, op)
    x = make((6, 33), dtype, "strided")
    out = make((6, 33), dtype, "transposed")
    r = f(x, out=out)
    assert r is out
    same(out, f(as_np(x)))
    # NumPy input, tensor out; and in place (out is x).
    out2 = torch.empty(6, 33, dtype=dtype)
    assert f(as_np(x), out=out2) is out2
    same(out2, f(as_np(x)))
    out3 = np.empty((6, 33), as_np(x).dtype)  # tensor input, NumPy out: out itself comes back
    assert f(x, out=out3) is out3
    y = x.clone()
    assert f(y, out=y) is y
    same(y, f(as_np(x)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_logsumexp_and_attention_out_tensors(dtype):
    x = make((5, 12), dtype, "contiguous")
    out = torch.empty(5, dtype=dtype)
    assert normexp.logsumexp(x, out=out) is out
    same(out, normexp.logsumexp(as_np(x)))
    if dtype in ATT_DTYPES:
        q = make((2, 6, 8), dtype, "contiguous")
        o = torch.empty(2, 6, 8, dtype=dtype)
        r, lse = normexp.attention(q, q, q, out=o, return_lse=True)
        assert r is o and isinstance(lse, torch.Tensor)
        same((o, lse), normexp.attention(as_np(q), as_np(q), as_np(q), return_lse=True))


def test_failed_call_leaves_out_untouched():
    x = torch.randn(3, 4)
    out = torch.full((3, 4), 7.0)
    with pytest.raises(ValueError, match="temperature"):
        normexp.softmax(x, temperature=-1.0, out=out)
    with pytest.raises(ValueError, match="where"):
        normexp.softmax(x, where=torch.ones(5, dtype=torch.bool), out=out)
    with pytest.raises(TypeError, match="out has dtype"):
        normexp.softmax(x, out=torch.empty(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="out has shape"):
        normexp.log_softmax(x, out=torch.empty(4, 3))
    q = torch.randn(2, 4, 8)
    o = torch.full((2, 4, 8), 7.0)
    with pytest.raises(ValueError, match="mask"):
        normexp.attention(q, q, q, mask=torch.ones(3, 3, dtype=torch.bool), out=o)
    assert torch.all(out == 7.0) and torch.all(o == 7.0)


# ---- no copies: the kernels see the caller's memory ---------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_kernels_read_and_write_the_tensors_memory(monkeypatch, dtype, layout):
    seen = []
    real_reduce = _core.reduce

    def spy(op, src, dst, *args):
        seen.append((pointer(src), src.strides, pointer(dst)))
        return real_reduce(op, src, dst, *args)

    monkeypatch.setattr(_core, "reduce", spy)
    real_fast = _api._FAST["log_softmax"]

    def fast_spy(src, axis, temperature, dst, *args):  # the single-crossing path (None: it declined)
        r = real_fast(src, axis, temperature, dst, *args)
        if r is not None:
            seen.append((pointer(src), src.strides, pointer(r)))
        return r

    monkeypatch.setitem(_api._FAST, "log_softmax", fast_spy)
    x = make((8, 40), dtype, layout)
    out = make((8, 40), dtype, layout, seed=1)
    assert normexp.softmax(x, where=torch.ones(8, 40, dtype=torch.bool)[0], out=out) is out  # general path
    normexp.log_softmax(x, axis=0, out=out)
    assert [dst for _, _, dst in seen] == [out.data_ptr()] * 2  # the kernel writes out itself
    # Without where= (which makes the masked copy), the kernel reads x itself, through its strides.
    assert seen[1][:2] == (x.data_ptr(), tuple(s * x.element_size() for s in x.stride()))
    assert torch.equal(out, torch.from_numpy(normexp.log_softmax(x.numpy(), axis=0)))


def test_attention_and_sampling_read_the_tensors_memory(monkeypatch):
    seen = {}
    for name in ("attention", "sample", "cross_entropy"):
        real = getattr(_core, name)

        def spy(*args, _real=real, _name=name, **kw):
            seen[_name] = [pointer(a) for a in args if isinstance(a, np.ndarray)]
            return _real(*args, **kw)

        monkeypatch.setattr(_core, name, spy)
    qkv = torch.randn(2, 7, 3, 3, 16)  # (B, L, 3, H, D): a fused projection, read through strides
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    o = torch.empty(2, 3, 7, 16)
    normexp.attention(q, k, v, out=o)
    assert seen["attention"][:4] == [q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr()]
    logits = torch.randn(4, 50)
    normexp.sample(logits, rng=0)
    normexp.cross_entropy(logits, torch.tensor([1, 2, 3, 4]))
    assert seen["sample"][0] == logits.data_ptr() and seen["cross_entropy"][0] == logits.data_ptr()


def test_results_are_tensors_sharing_the_results_memory():
    x = torch.randn(3, 5)
    r = normexp.log_softmax(x)
    assert isinstance(r, torch.Tensor) and r.dtype == torch.float32 and not r.requires_grad
    assert r.data_ptr() != x.data_ptr()


def test_calls_leave_no_reference_cycles():
    """A call on tensors frees everything it made when it returns (no garbage for the collector: a
    cycle per call costs the collector's time on every small call)."""
    import gc

    x, q = torch.randn(3, 4), torch.randn(2, 4, 8)
    calls = [lambda: normexp.softmax(x, out=torch.empty(3, 4)), lambda: normexp.logsumexp(x, return_sign=True),
             lambda: normexp.attention(q, q, q, return_lse=True), lambda: normexp.special.logsumexp(x)]
    for call in calls:
        call()
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        for _ in range(50):
            for call in calls:
                call()
        assert len(gc.get_objects()) - before < 50
    finally:
        gc.enable()


# ---- errors ---------------------------------------------------------------------------------------------
def test_requires_grad_is_refused_with_detach_hint():
    x = torch.randn(3, 4, requires_grad=True)
    for call in (lambda: normexp.softmax(x), lambda: normexp.special.logsumexp(x),
                 lambda: normexp.attention(x, x, x), lambda: normexp.sample(x, rng=0)):
        with pytest.raises(TypeError, match=r"requires grad.*\.detach\(\).*no_grad"):
            call()
    with pytest.raises(TypeError, match=r"out: the tensor requires grad"):
        normexp.softmax(x.detach(), out=torch.empty(3, 4, requires_grad=True))
    with pytest.raises(TypeError, match=r"b: the tensor requires grad"):
        normexp.logsumexp(x.detach(), b=torch.ones(3, 4, requires_grad=True))
    assert isinstance(normexp.softmax(x.detach()), torch.Tensor)


def test_non_cpu_device_is_refused():
    x = torch.empty(3, 4, device="meta")
    with pytest.raises(ValueError, match=r"x is on device meta; normexp runs on the CPU: move it there with x\.cpu\(\)"):
        normexp.softmax(x)
    with pytest.raises(ValueError, match=r"q is on device meta"):
        normexp.attention(x, x, x)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2], ids=str)
def test_unsupported_dtypes_are_refused(dtype):
    x = torch.zeros(4).to(dtype)
    with pytest.raises(TypeError, match=rf"x: cannot read a tensor of dtype {dtype}.*cast it to float32"):
        normexp.softmax(x)
    with pytest.raises(TypeError, match="complex input"):
        normexp.softmax(torch.zeros(3, dtype=torch.complex64))


# ---- any DLPack object -----------------------------------------------------------------------------------
class Borrowed:
    """The least a DLPack producer provides: __dlpack__ and __dlpack_device__ (no array namespace)."""

    def __init__(self, a: np.ndarray, device=(1, 0)):
        self._a, self._device = a, device

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


def test_plain_dlpack_object_is_read_in_place_and_gives_numpy():
    a = np.random.default_rng(0).standard_normal((4, 9)).astype(np.float32)
    r = normexp.softmax(Borrowed(a[:, ::2]))
    assert type(r) is np.ndarray
    np.testing.assert_array_equal(r, normexp.softmax(a[:, ::2]))
    out = np.empty((4, 5), np.float32)
    assert normexp.log_softmax(Borrowed(a[:, ::2]), out=out) is out


class TorchBorrowed:
    """A DLPack-only producer of torch memory (bfloat16 included, which NumPy's DLPack import refuses)."""

    def __init__(self, t):
        self._t = t

    def __dlpack__(self, **kwargs):
        return self._t.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


class TorchBorrowedLegacy(TorchBorrowed):
    """The same memory through an unversioned capsule (a producer without DLPack 1.0's max_version)."""

    def __dlpack__(self, **kwargs):
        return self._t.__dlpack__()


def test_plain_dlpack_bfloat16_is_read_and_written_in_place():
    """A plain DLPack object (no array namespace) of bfloat16, which np.from_dlpack refuses, is read from its
    capsule's tensor in place, and written there as out= where the capsule allows it: as np.from_dlpack
    imports the other dtypes, a versioned capsule says (its read-only flag), an unversioned one is read-only
    (JAX gives one: its arrays are immutable)."""
    t = torch.randn(5, 18).to(torch.bfloat16)
    for view in (t, t[:, ::2], t.T):
        for wrap in (TorchBorrowed, TorchBorrowedLegacy):
            r = normexp.softmax(wrap(view), axis=-1)
            assert type(r) is np.ndarray and r.dtype.name == "bfloat16"
            np.testing.assert_array_equal(r.view(np.uint16), normexp.softmax(view, axis=-1).view(torch.int16).numpy().view(np.uint16))
    for dtype in (torch.bfloat16, torch.float32):
        x = t.to(dtype)
        out = torch.empty(5, 18, dtype=dtype)
        assert normexp.log_softmax(x, out=TorchBorrowed(out)) is not None
        assert torch.equal(out, normexp.log_softmax(x))
        out = torch.zeros(5, 18, dtype=dtype)
        with pytest.raises(ValueError, match="out is read-only"):
            normexp.log_softmax(x, out=TorchBorrowedLegacy(out))
        assert not out.any()
    assert normexp.softmax(TorchBorrowed(torch.empty(0, 3, dtype=torch.bfloat16))).shape == (0, 3)


def test_plain_dlpack_bfloat16_view_keeps_the_memory_alive():
    from normexp import _interop

    def view():
        return _interop.to_numpy(TorchBorrowed(torch.arange(12.0).to(torch.bfloat16)), "x")

    v = view()
    gc.collect()
    torch.randn(1 << 20)  # would reuse the tensor's memory had the view not kept it
    assert v.astype(np.float32).tolist() == list(range(12))


def test_plain_dlpack_object_on_another_device_is_refused():
    with pytest.raises(ValueError, match=r"x is on device cuda:1; normexp runs on the CPU"):
        normexp.softmax(Borrowed(np.zeros(3), device=(2, 1)))


def test_numpy_calls_are_unchanged():
    x = np.random.default_rng(1).standard_normal((3, 8))
    assert type(normexp.softmax(x)) is np.ndarray
    assert type(normexp.special.logsumexp(x, axis=-1)) is np.ndarray
    assert type(normexp.logsumexp(x[0])) is np.float64


# ---- JAX ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def jnp():
    pytest.importorskip("jax", reason="JAX is not installed: pip install 'jax[cpu]' (.ci/run installs it)")
    import jax.numpy

    return jax.numpy


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_jax_arrays_in_and_out(jnp, dtype):
    a = np.random.default_rng(2).standard_normal((6, 11)).astype(np.float32)
    x = jnp.asarray(a).astype(dtype)
    ref_in = np.asarray(x)
    for f in (normexp.softmax, normexp.log_softmax, normexp.logsumexp, normexp.special.logsumexp,
              lambda v: normexp.sample(v, rng=1), lambda v: normexp.cross_entropy(v, np.arange(6))):
        got, ref = f(x), f(ref_in)
        assert type(got) is type(x), type(got)
        np.testing.assert_array_equal(np.asarray(got), ref)
        # JAX holds 64-bit integers as int32 unless jax_enable_x64 is set: sample's indices are JAX's ints.
        assert np.asarray(got).dtype == jnp.asarray(ref).dtype
    q = jnp.asarray(np.random.default_rng(3).standard_normal((2, 5, 8)).astype(np.float32))
    o, lse = normexp.attention(q, q, q, return_lse=True)
    assert type(o) is type(q) and type(lse) is type(q)
    np.testing.assert_array_equal(np.asarray(o), normexp.attention(np.asarray(q), np.asarray(q), np.asarray(q)))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_jax_arrays_are_never_written(jnp, dtype):
    """JAX arrays are immutable: as out= every dtype is refused and left as it was (a bfloat16 one, viewed
    from its DLPack capsule rather than by np.from_dlpack, was written in place)."""
    out = jnp.zeros((2, 3), dtype)
    for x in (np.ones((2, 3), np.float32).astype(out.dtype), torch.ones(2, 3).to(getattr(torch, dtype))):
        with pytest.raises(ValueError, match="read-only"):
            normexp.softmax(x, out=out)
    assert not np.asarray(out).any()


def test_jax_input_is_not_copied(jnp, monkeypatch):
    x = jnp.asarray(np.random.default_rng(4).standard_normal((4, 16)).astype(np.float32))
    seen = []
    real_reduce = _core.reduce
    real_fast = _api._FAST["log_softmax"]
    monkeypatch.setattr(_core, "reduce", lambda op, src, dst, *a: (seen.append(pointer(src)), real_reduce(op, src, dst, *a)))
    monkeypatch.setitem(_api._FAST, "log_softmax", lambda src, *a: (seen.append(pointer(src)), real_fast(src, *a))[1])
    normexp.log_softmax(x, where=np.ones(16, bool))
    normexp.log_softmax(x, axis=0)
    assert seen[-1] == x.unsafe_buffer_pointer()
