import logging
import warnings

import pytest
import torch

from text3d import backends
from text3d.backends import select_backend
from text3d.errors import BackendUnavailable, UserError

CUDA = torch.device("cuda", 0)


@pytest.fixture(autouse=True)
def fresh_reports(monkeypatch):
    monkeypatch.setattr(backends, "_reported", set())


def probes(**problems):
    """Probes answering the given problems (None: runs), recording the order they are asked in."""
    asked = []

    def probe(name):
        def ask(device):
            asked.append(name)
            return problems[name]

        return ask

    return {name: probe(name) for name in problems}, asked


def test_torch_and_auto_off_cuda_never_probe_the_cuda_candidates():
    candidates, asked = probes(cuda="broken", tcnn="broken")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_backend("hash grid", "torch", CUDA, candidates) == "torch"
        assert select_backend("hash grid", "auto", "cpu", candidates) == "torch"
        assert select_backend("hash grid", "auto", None, candidates) == "torch"
    assert asked == []


def test_the_cpu_candidates_run_on_the_cpu_only(caplog):
    candidates, asked = probes(cuda=None)
    cpu, cpu_asked = probes(cpp=None)
    with caplog.at_level(logging.INFO, logger="text3d.backends"):
        assert select_backend("hash grid", "auto", "cpu", candidates, cpu) == "cpp"
        assert select_backend("hash grid", "auto", CUDA, candidates, cpu) == "cuda"
        assert select_backend("hash grid", "cpp", "cpu", candidates, cpu) == "cpp"
    assert asked == ["cuda"] and cpu_asked == ["cpp", "cpp"]
    assert [r.getMessage() for r in caplog.records] == ["hash grid on cpu: cpp backend", "hash grid on cuda:0: cuda backend"]
    with pytest.raises(BackendUnavailable, match="hash grid: backend 'cpp' needs the CPU, not cuda:0"):
        select_backend("hash grid", "cpp", CUDA, candidates, cpu)
    broken, _ = probes(cpp="no C++ compiler to build them (install g++, or set CXX)")
    with pytest.warns(UserWarning, match=r"hash grid: cpp backend unavailable \(no C\+\+ compiler"):
        assert select_backend("hash grid", "auto", "cpu", candidates, broken) == "torch"
    with pytest.raises(BackendUnavailable, match="hash grid: cpp backend unavailable"):
        select_backend("hash grid", "cpp", "cpu", candidates, broken)


def test_auto_takes_the_first_candidate_that_runs_and_logs_it_once(caplog):
    candidates, asked = probes(cuda="the JIT build failed", tcnn=None)
    with caplog.at_level(logging.INFO, logger="text3d.backends"):
        assert select_backend("hash grid", "auto", CUDA, candidates) == "tcnn"
        assert select_backend("hash grid", "auto", CUDA, candidates) == "tcnn"
    assert asked == ["cuda", "tcnn", "cuda", "tcnn"]
    assert [r.getMessage() for r in caplog.records] == ["hash grid on cuda:0: tcnn backend"]


def test_auto_falls_back_to_torch_with_one_warning_naming_every_reason():
    candidates, _ = probes(cuda="needs features_per_level 1, 2, 4 or 8", tcnn="tinycudann is not importable")
    with pytest.warns(UserWarning) as caught:
        assert select_backend("hash grid", "auto", CUDA, candidates) == "torch"
    assert str(caught[0].message) == (
        "hash grid: cuda backend unavailable (needs features_per_level 1, 2, 4 or 8); tcnn backend unavailable "
        "(tinycudann is not importable); using the torch backend"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_backend("hash grid", "auto", CUDA, candidates) == "torch"


def test_a_backend_asked_for_by_name_runs_or_stops_the_run_with_one_line():
    candidates, _ = probes(nvdiffrast="ImportError: No module named 'nvdiffrast'")
    with pytest.raises(BackendUnavailable) as error:
        select_backend("rasterizer", "nvdiffrast", CUDA, candidates)
    assert str(error.value) == ("rasterizer: nvdiffrast backend unavailable (ImportError: No module named "
                                "'nvdiffrast'); use backend 'auto' or 'torch'")
    assert isinstance(error.value, UserError) and error.value.exit_code == 2
    with pytest.raises(BackendUnavailable, match="rasterizer: backend 'nvdiffrast' needs a CUDA device, not cpu"):
        select_backend("rasterizer", "nvdiffrast", "cpu", candidates)
    working, _ = probes(nvdiffrast=None)
    assert select_backend("rasterizer", "nvdiffrast", CUDA, working) == "nvdiffrast"


def test_an_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of auto, torch, cuda"):
        select_backend("volume compositing", "opengl", "cpu", {"cuda": lambda d: None})
