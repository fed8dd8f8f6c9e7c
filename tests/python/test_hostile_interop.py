"""Hostile cases for the torch/DLPack interop (python/normexp/_interop.py) that the main interop tests do
not reach: torch's lazy negative views as out=, in-place writes that autograd must see, and DLPack objects
whose protocol methods misbehave. Each case failed (a silently ignored out=, a silently wrong gradient, a
bare KeyError/AttributeError) before the fix in _interop.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import normexp

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch (.ci/run installs 2.13.0)")


def neg_view(shape, dtype=torch.float64):
    """A real tensor with torch's lazy negation bit set: the imaginary part of a lazy conjugate."""
    z = torch.randn(shape, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    v = z.conj().imag
    assert v.is_neg() and v.dtype == dtype
    return v


# ---- lazy negative / conjugate views ---------------------------------------------------------------------
def test_negative_view_as_input_reads_its_values():
    v = neg_view((4, 8))
    np.testing.assert_array_equal(normexp.softmax(v).numpy(), normexp.softmax(v.resolve_neg().numpy()))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_negative_view_as_out_is_refused_not_ignored(op):
    # Its memory holds -value: a NumPy view cannot write through the negation, and writing into a resolved
    # copy would return out unchanged.
    x = torch.randn(4, 8, dtype=torch.float64)
    out = neg_view((4, 8))
    before = out.clone()
    with pytest.raises(ValueError, match=r"out is a lazy negative view.*resolve_neg"):
        getattr(normexp, op)(x, out=out)
    assert torch.equal(out, before)


def test_negative_view_as_logsumexp_and_attention_out_is_refused():
    x = torch.randn(4, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="out is a lazy negative view"):
        normexp.logsumexp(x, out=neg_view((4,)))
    q = torch.randn(2, 4, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="out is a lazy negative view"):
        normexp.attention(q, q, q, out=neg_view((2, 4, 8)))


# ---- autograd's version counter ---------------------------------------------------------------------------
def test_out_write_bumps_the_version_counter():
    w = torch.randn(6)
    v0 = w._version
    normexp.softmax(torch.randn(6), out=w)
    assert w._version > v0


def test_out_overwriting_a_tensor_saved_for_backward_is_caught_by_autograd():
    # torch's own in-place ops make backward() raise here; a silent write would give a wrong gradient.
    p = torch.randn(3, requires_grad=True)
    w = torch.randn(3)
    y = (p * w).sum()
    normexp.softmax(torch.randn(3), out=w)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_in_place_call_bumps_the_version_counter():
    x = torch.randn(2, 5)
    v0 = x._version
    assert normexp.log_softmax(x, out=x) is x
    assert x._version > v0


def test_failed_call_does_not_bump_the_version_counter():
    w = torch.full((3,), 7.0)
    v0 = w._version
    with pytest.raises(ValueError, match="temperature"):
        normexp.softmax(torch.randn(3), temperature=-1.0, out=w)
    assert w._version == v0 and torch.all(w == 7.0)


# ---- DLPack objects whose protocol methods misbehave ------------------------------------------------------
class _RaisesKeyError:
    def __dlpack__(self, **kwargs):
        raise KeyError("stream")


class _BadDevice:
    def __dlpack__(self, **kwargs):
        raise RuntimeError("unused")

    def __dlpack_device__(self):
        return "cpu"


class _DeviceRaises:
    def __dlpack__(self, **kwargs):
        raise RuntimeError("unused")

    def __dlpack_device__(self):
        raise AttributeError("no device")


@pytest.mark.parametrize("obj", [_RaisesKeyError(), _BadDevice(), _DeviceRaises()], ids=type)
def test_broken_dlpack_objects_give_a_type_error_naming_the_argument(obj):
    with pytest.raises(TypeError, match=r"^x: cannot read"):
        normexp.softmax(obj)
    with pytest.raises(TypeError, match=r"^out: cannot read"):
        normexp.softmax(np.zeros(3), out=obj)
    with pytest.raises(TypeError, match=r"^where: cannot read"):
        normexp.softmax(np.zeros(3), where=obj)


def test_memory_error_from_dlpack_is_not_renamed():
    class Oom:
        def __dlpack__(self, **kwargs):
            raise MemoryError

    with pytest.raises(MemoryError):
        normexp.softmax(Oom())


# ---- out= whose elements share memory ---------------------------------------------------------------------
def test_expanded_out_tensor_is_refused_like_torch_does():
    # torch's own out= refuses a tensor whose elements share memory; writing rows into one row of memory
    # left only the last row's result there.
    x = torch.randn(3, 4)
    out = torch.zeros(1, 4).expand(3, 4)
    with pytest.raises(RuntimeError):
        torch.exp(x, out=out)
    with pytest.raises(ValueError, match=r"out has elements that share memory.*expand"):
        normexp.softmax(x, out=out)
    with pytest.raises(ValueError, match="out has elements that share memory"):
        normexp.logsumexp(torch.randn(4, 3), axis=0, out=torch.zeros(1).expand(3))
    assert torch.all(out == 0)
