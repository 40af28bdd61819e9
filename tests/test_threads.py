"""CPU threads: ``--threads`` over ``MTNAS_THREADS`` over ``OMP_NUM_THREADS`` over the physical
cores shared among the local workers; what a command uses is what torch runs with."""

from __future__ import annotations

import pytest
import torch

from mtnas.cli import main
from mtnas.core import MtnasError
from mtnas.train import _threads, cpu_threads, physical_cores, use_cpu_threads


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("MTNAS_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return monkeypatch


def test_the_first_setting_given_wins(no_env: pytest.MonkeyPatch) -> None:
    no_env.setattr(_threads, "physical_cores", lambda: 8)
    assert cpu_threads() == _threads.Threads(8, "default")
    assert cpu_threads(workers=3) == _threads.Threads(2, "default")  # 8 cores among 3 local workers
    assert cpu_threads(workers=16).count == 1
    no_env.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(workers=2) == _threads.Threads(3, "OMP_NUM_THREADS")
    no_env.setenv("OMP_NUM_THREADS", "4,2")  # OpenMP's nested form: not a count mtnas reads
    assert cpu_threads().source == "default"
    no_env.setenv("MTNAS_THREADS", "5")
    assert cpu_threads() == _threads.Threads(5, "MTNAS_THREADS")
    assert cpu_threads(2) == _threads.Threads(2, "--threads")


def test_a_bad_mtnas_threads_is_one_line(no_env: pytest.MonkeyPatch) -> None:
    for text in ("0", "two", "99999"):
        no_env.setenv("MTNAS_THREADS", text)
        with pytest.raises(MtnasError, match=rf"^MTNAS_THREADS='{text}': expected a whole number of threads from 1"):
            cpu_threads()


def test_physical_cores_count_hyperthreads_once(no_env: pytest.MonkeyPatch, tmp_path) -> None:
    topology = {0: ("0", "0"), 1: ("0", "0"), 2: ("0", "1"), 3: ("0", "1")}  # 2 cores, 2 threads each
    real_path = _threads.Path

    def fake_path(text: str):
        if text.startswith("/sys/devices/system/cpu/cpu"):
            cpu = int(text.split("cpu")[-1].split("/")[0])
            folder = tmp_path / f"cpu{cpu}"
            folder.mkdir(exist_ok=True)
            (folder / "physical_package_id").write_text(topology[cpu][0])
            (folder / "core_id").write_text(topology[cpu][1])
            return folder
        if text == "/sys/fs/cgroup/cpu.max":
            return tmp_path / "no-quota"
        return real_path(text)

    no_env.setattr(_threads, "_usable_cpus", lambda: [0, 1, 2, 3])
    no_env.setattr(_threads, "Path", fake_path)
    assert physical_cores() == 2
    (tmp_path / "no-quota").write_text("100000 100000\n")  # a container limited to one CPU
    assert physical_cores() == 1


def test_torch_runs_with_the_count_and_the_cli_sets_it(no_env: pytest.MonkeyPatch, tiny_space,
                                                       capsys: pytest.CaptureFixture) -> None:
    before = torch.get_num_threads()
    try:
        assert use_cpu_threads(3).count == 3 and torch.get_num_threads() == 3
        no_env.setenv("MTNAS_THREADS", "2")
        assert main(["train", str(tiny_space), "--quiet"]) == 0
        assert torch.get_num_threads() == 2
        assert main(["train", str(tiny_space), "--threads", "1", "--quiet"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    assert main(["train", str(tiny_space), "--threads", "0"]) == 2
    assert "--threads: must be >= 1, got 0" in capsys.readouterr().err
