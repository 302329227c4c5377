"""A stored result's provenance names the files its checkout differed in, and a bench refuses,
before any work, a checkout whose raypkg/ differs unless the table is a draft
(``raypkg.tracking.provenance``)."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

import raypkg.tracking.provenance as P
from raypkg.cli import main
from raypkg.errors import UsageError
from raypkg.tracking.markdown import render
from raypkg.tracking.run import write_parquet


@pytest.fixture
def not_draft(monkeypatch):
    monkeypatch.delenv(P.DRAFT_ENV, raising=False)  # tests/conftest.py makes every test's tables drafts


def test_the_differing_files_are_read_from_git_status(monkeypatch):
    status = " M raypkg/a.py\0R  docs/b.md\0docs/a.md\0 D README.md\0"
    new = "raypkg/new.py\0"  # git ls-files --others under raypkg/: new code a run imports
    monkeypatch.setattr(P, "_git", lambda *args: new if args[0] == "ls-files" else status)
    # tracked changes anywhere, both sides of a rename; new files only under raypkg/
    assert P.dirty_files() == ["README.md", "docs/a.md", "docs/b.md", "raypkg/a.py", "raypkg/new.py"]
    monkeypatch.setattr(P, "_git", lambda *args: "")
    assert P.dirty_files() == []


def test_a_tree_dirty_outside_raypkg_is_recorded_and_not_refused(monkeypatch, not_draft, tmp_path):
    monkeypatch.setattr(P, "dirty_files", lambda: ["README.md", "docs/results.md"])
    source = P.provenance(threads=1)
    assert source["commit"].endswith("+dirty") and source["dirty_files"] == ["README.md", "docs/results.md"]
    assert "draft" not in source
    path = write_parquet(tmp_path / "t.parquet", pd.DataFrame({"method": ["full"]}), source)
    assert f"at commit {source['commit']} (2 files differed from it, none of them code; its provenance lists them) on " \
        in render(path, ["method"])
    explained = {**source, "dirty_files": ["raypkg/a.py"], "explained": "a docstring only"}
    path = write_parquet(tmp_path / "e.parquet", pd.DataFrame({"method": ["full"]}), explained)
    assert "(1 file differed from it, code among them; its provenance says why none changed what ran)" in render(
        path, ["method"])
    unrecorded = {k: v for k, v in source.items() if k != "dirty_files"}  # stored before the writer recorded them
    path = write_parquet(tmp_path / "u.parquet", pd.DataFrame({"method": ["full"]}), unrecorded)
    assert f"at commit {source['commit']} (uncommitted changes, not recorded: it needs a rerun at a clean commit) on " \
        in render(path, ["method"])


def test_a_clean_tree_records_no_differing_files(monkeypatch, not_draft):
    monkeypatch.setattr(P, "dirty_files", lambda: [])
    source = P.provenance(threads=1)
    assert "+dirty" not in source["commit"] and "dirty_files" not in source and "draft" not in source


def test_a_tree_whose_raypkg_differs_is_refused_unless_a_draft(monkeypatch, not_draft, tmp_path):
    monkeypatch.setattr(P, "dirty_files", lambda: ["docs/x.md", "raypkg/a.py", "raypkg/b.py", "raypkg/c.py",
                                                   "raypkg/d.py"])
    with pytest.raises(UsageError) as refused:
        P.provenance(threads=1)
    said = str(refused.value)
    assert len(said.splitlines()) == 1 and "raypkg/a.py, raypkg/b.py, raypkg/c.py and 1 more" in said
    assert "EFFRAY_DRAFT=1" in said and "docs/x.md" not in said
    monkeypatch.setenv(P.DRAFT_ENV, "1")
    source = P.provenance(threads=1)
    assert source["draft"] == "EFFRAY_DRAFT=1" and "raypkg/a.py" in source["dirty_files"]
    path = write_parquet(tmp_path / "t.parquet", pd.DataFrame({"method": ["full"]}), source)
    assert "A draft (EFFRAY_DRAFT=1)" in render(path, ["method"])  # the docs' line says so too


def test_a_bench_refuses_the_tree_before_any_work(monkeypatch, not_draft, tmp_path):
    monkeypatch.setattr(P, "dirty_files", lambda: ["raypkg/engine/loop.py"])
    stem = tmp_path / "d"
    result = CliRunner().invoke(main, ["bench", "deltagrad", "--train-size", "200", "--no-mlp", "--gd-epochs", "0",
                                       "--online-requests", "0", "--wandb", "disabled", "--save", str(stem)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "raypkg/engine/loop.py" in lines[0], result.output
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_a_tune_sweep_refuses_the_tree_before_ray_starts(monkeypatch, not_draft, tmp_path):
    import ray

    monkeypatch.setattr(P, "dirty_files", lambda: ["raypkg/tuning.py"])
    started = []  # Ray may be up already (another test of this process): the sweep must not start or join it
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: started.append(args))
    result = CliRunner().invoke(main, ["tune", "train", "--num-samples", "1", "--out", str(tmp_path),
                                       "--wandb", "disabled"])
    assert result.exit_code == 2 and "raypkg/tuning.py" in result.output, result.output
    assert not started and not list(tmp_path.iterdir())


def test_a_table_judged_from_points_other_code_ran_names_that_code_in_its_line(monkeypatch, not_draft, tmp_path):
    monkeypatch.setattr(P, "dirty_files", lambda: [])
    source = P.provenance(threads=1)
    plain = write_parquet(tmp_path / "p.parquet", pd.DataFrame({"method": ["full"]}), source)
    assert "were run at" not in render(plain, ["method"])  # the commit that measured it ran its points too
    rendered = write_parquet(tmp_path / "r.parquet", pd.DataFrame({"method": ["full"]}),
                             {**source, "point_commits": "2b57617 (17 point runs)"})
    assert f"at commit {source['commit']} on " in render(rendered, ["method"])
    assert "Its points were run at 2b57617 (17 point runs)." in render(rendered, ["method"])


CPUINFO = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: AMD EPYC\n"
           "\nprocessor\t: 1\ncpu family\t: 99\nmodel\t\t: 99\nmodel name\t: AMD EPYC\n")


def test_a_machine_is_its_cpus_generation_flags_and_caps_so_two_of_one_model_name_are_two_clocks(monkeypatch):
    """Two VMs both named `AMD EPYC` are told apart by their family and model numbers (the first
    processor's), their bf16 and AVX-512 flags, and an ISA cap in force; a CPU that reports no
    family (an ARM's cpuinfo) is named without one; with a GPU, the card and the host's name."""
    from raypkg.engine import execution as E

    def on(family, model, flags, **caps):
        monkeypatch.setattr(E, "_cpuinfo", lambda: CPUINFO.format(family=family, model=model))
        monkeypatch.setattr(E, "cpu_flags", lambda: set(flags))
        for name in E.ISA_CAPS:
            monkeypatch.delenv(name, raising=False)
        for name, value in caps.items():
            monkeypatch.setenv(name, value)
        return P.machine()

    avx2 = on(23, 49, {"avx2", "fma"})
    assert avx2 == "AMD EPYC (family 23 model 49; avx2)"
    assert on(25, 17, {"avx2", "avx512f", "avx512_bf16"}) == "AMD EPYC (family 25 model 17; avx2,avx512_bf16,avx512f)"
    capped = on(25, 17, {"avx2"}, ONEDNN_MAX_CPU_ISA="AVX2")
    assert capped == "AMD EPYC (family 25 model 17; avx2; ONEDNN_MAX_CPU_ISA=AVX2)"
    assert len({avx2, capped, on(25, 17, {"avx2"})}) == 3 and on(23, 49, {"avx2", "fma"}) == avx2
    monkeypatch.setattr(E, "_cpuinfo", lambda: "processor\t: 0\nCPU part\t: 0xd0c\nFeatures\t: fp asimd\n")
    assert E.cpu_generation() == ""
    import torch  # a GPU's points are timed by the card: its host's generation and flags aside

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *device: "NVIDIA H200")
    assert on(25, 17, {"avx2"}) == on(23, 49, {"avx2", "avx512f"}) == "cuda: NVIDIA H200 on AMD EPYC"
