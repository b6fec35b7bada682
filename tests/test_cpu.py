"""What each CPU can run: tiers by each library's own rule, the int8 recipe per ISA, fake flags, and old baselines.

The decisions are exercised on every CPU through BENCH_FAKE_CPU_FLAGS; the libraries' own behaviour on the real
CPU is what the backend tests check, against the tier this machine's flags give.
"""

import json

import pytest

from bench import cpu
from bench.backends.precision_mode import row_label
from bench.results.baselines import BASELINES_VAR
from bench.results.identity import identity_differences, machine_identity, machine_key
from bench.run.peak import probe_precisions
from conftest import TINY_DEFAULTS, TINY_MODEL, bench_cli, write_suite
from test_regression import suite_rows
from test_report import manifest, write_run

AVX2_EPYC = {"avx2", "fma"}
"""AMD EPYC family 23: AVX2 and FMA, no AVX-512, no VNNI, no bf16 instructions."""
SKYLAKE = AVX2_EPYC | {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
CASCADE_LAKE = SKYLAKE | {"avx512_vnni"}
ZEN4 = CASCADE_LAKE | {"avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"}
ALDER_LAKE = AVX2_EPYC | {"avx_vnni"}
ARROW_LAKE = ALDER_LAKE | {"avx_vnni_int8", "avx_ne_convert"}


def tier(backend, precision, flags, **options):
    return cpu.support(backend, precision, flags, options).tier


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        # (pytorch, ipex, openvino, trainer without IPEX) bf16
        (AVX2_EPYC, (cpu.EMULATED, cpu.UNSUPPORTED, cpu.KEPT_FP32, cpu.EMULATED)),
        (ALDER_LAKE, (cpu.EMULATED, cpu.UNSUPPORTED, cpu.KEPT_FP32, cpu.EMULATED)),
        (ARROW_LAKE, (cpu.EMULATED, cpu.EMULATED, cpu.EMULATED, cpu.EMULATED)),
        (SKYLAKE, (cpu.EMULATED, cpu.EMULATED, cpu.EMULATED, cpu.EMULATED)),
        (ZEN4, (cpu.NATIVE,) * 4),
        (SAPPHIRE_RAPIDS, (cpu.NATIVE,) * 4),
    ],
)
def test_bf16_tiers_follow_each_librarys_rule(flags, expected):
    got = (
        tier("pytorch", "bf16", flags),
        tier("ipex", "bf16", flags),
        tier("openvino", "bf16", flags),
        tier("trainer", "bf16", flags, use_ipex=False),
    )
    assert got == expected
    assert tier("trainer", "bf16", flags) == expected[1]  # the Trainer's use_ipex is IPEX's rule
    for backend in ("pytorch", "ipex", "openvino", "onnxruntime", "torchscript"):
        assert tier(backend, "fp32", flags) == cpu.NATIVE
    assert tier("onnxruntime", "int8", flags) == tier("openvino", "int8", flags) == cpu.NATIVE


def test_reasons_are_in_the_users_words():
    assert cpu.support("ipex", "bf16", AVX2_EPYC).reason == (
        "bf16 on IPEX needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT; this CPU has AVX2"
    )
    assert cpu.support("pytorch", "bf16", SKYLAKE).reason == "bf16 is emulated on this CPU (no AVX512_BF16/AMX)"
    assert "runs a bf16 hint as f32" in cpu.support("openvino", "bf16", AVX2_EPYC).reason
    assert cpu.support("pytorch", "bf16", ZEN4).reason is None


@pytest.mark.parametrize(
    ("flags", "machine", "recipe"),
    [
        (AVX2_EPYC, "x86_64", "avx2"),
        (SKYLAKE, "x86_64", "avx512"),
        (CASCADE_LAKE, "x86_64", "avx512_vnni"),
        (ALDER_LAKE, "x86_64", "avx512_vnni"),  # AVX-VNNI: the same u8s8 kernels without saturation
        (SAPPHIRE_RAPIDS - {"avx512_vnni"}, "x86_64", "avx512_vnni"),  # AMX-INT8
        (set(), "aarch64", "arm64"),
    ],
)
def test_the_int8_recipe_is_chosen_from_the_cpu(flags, machine, recipe):
    assert cpu.int8_recipe(flags, machine) == recipe


def test_isa_tiers_name_the_level_that_decides():
    names = [cpu.isa_tier(f, "x86_64") for f in (AVX2_EPYC, ALDER_LAKE, SKYLAKE, CASCADE_LAKE, ZEN4, SAPPHIRE_RAPIDS)]
    assert names == ["AVX2", "AVX2 + AVX-VNNI", "AVX-512", "AVX-512 VNNI", "AVX-512 BF16", "AMX"]
    assert cpu.isa_tier(set(), "aarch64") == "ARM64"


def test_fake_flags_replace_the_cpus_and_are_recorded(monkeypatch):
    monkeypatch.setenv(cpu.FAKE_FLAGS_VAR, "avx2,fma avx512f")
    assert cpu.cpu_flags("flags : sse avx2 amx_tile\n") == {"avx2", "fma", "avx512f"}
    section = cpu.cpu_section("flags : sse avx2 amx_tile\n")
    assert section["fake_flags"] == ["avx2", "avx512f", "fma"]
    assert section["isa"]["avx512f"] and not section["isa"]["amx_tile"]
    monkeypatch.delenv(cpu.FAKE_FLAGS_VAR)
    real = cpu.cpu_section("processor : 0\nflags : sse avx2 amx_tile\n")
    assert "fake_flags" not in real and real["isa"]["amx_tile"] and set(real["isa"]) == set(cpu.ISA_FLAGS)


def test_new_flags_keep_old_machine_keys_and_compare_only_flags_both_recorded():
    old = {"cpu": {"model": "AMD EPYC", "logical_cpus": 2, "isa": {f: f in AVX2_EPYC for f in cpu.KEY_FLAGS}},
           "memory_gib": 23.5}  # fmt: skip
    new = {**old, "cpu": {**old["cpu"], "isa": {f: f in AVX2_EPYC | {"avx_ne_convert"} for f in cpu.ISA_FLAGS}}}
    assert machine_key(machine_identity(old)) == machine_key(machine_identity(new))
    both = identity_differences(machine_identity(old), machine_identity(new), old["cpu"]["isa"], new["cpu"]["isa"])
    assert both == []
    other = {**old, "cpu": {**old["cpu"], "isa": {**old["cpu"]["isa"], "avx512f": True}}}
    differs = identity_differences(machine_identity(old), machine_identity(other), old["cpu"]["isa"],
                                   other["cpu"]["isa"])  # fmt: skip
    assert differs == ["machine.isa: only in base none, only in new ['avx512f']"]


def test_a_reduced_precision_row_that_computed_fp32_is_labelled_and_questioned():
    row = {"status": "ok", "precision": "bf16", "backend_type": "openvino",
           "precision_mode": {"weights": "fp32", "compute": "fp32", "how": "native", "label": "fp32"},
           "accuracy": {"relative_error": 4.2e-07}}  # fmt: skip
    entry, warnings = cpu.settled(cpu.Support(cpu.NATIVE), row, SAPPHIRE_RAPIDS)
    assert entry["tier"] == cpu.KEPT_FP32 and entry["fp32_sized_error"] == 4.2e-07
    assert warnings == ["did it run fp32? a bf16 case whose relative error against eager fp32 is fp32-sized (4.2e-07)"]
    assert row_label({**row, "cpu_support": entry}) == "bf16 kept fp32"
    bf16 = {**row, "precision_mode": {"compute": "bf16", "label": "bf16 autocast"}, "accuracy": {"relative_error": 3e-3}}
    entry, warnings = cpu.settled(cpu.Support(cpu.EMULATED, "emulated"), bf16, AVX2_EPYC)
    assert entry["tier"] == cpu.EMULATED and warnings == []
    assert row_label({**bf16, "cpu_support": entry}) == "bf16 autocast (emulated)"
    fp32 = {**row, "precision": "fp32"}
    assert cpu.settled(cpu.Support(cpu.NATIVE), fp32, AVX2_EPYC) == ({"tier": cpu.NATIVE, "reason": None}, [])


def test_the_peak_probe_skips_what_the_cpu_emulates_and_the_run_does_not_measure():
    class Case:
        def __init__(self, backend_type, precision):
            self.backend_type, self.precision, self.backend_options = backend_type, precision, {}

    cases = [Case("pytorch", "fp32"), Case("pytorch", "bf16"), Case("onnxruntime", "int8")]
    probed, skipped = probe_precisions(cases, AVX2_EPYC)
    assert probed == ["fp32", "int8"] and list(skipped) == ["bf16"]
    assert probe_precisions(cases, AVX2_EPYC, emulated=True)[0] == ["fp32", "bf16", "int8"]
    assert probe_precisions(cases[:1], SAPPHIRE_RAPIDS) == (["fp32", "bf16", "int8"], {})
    probed, skipped = probe_precisions(cases[:1], AVX2_EPYC)
    assert probed == ["fp32"] and sorted(skipped) == ["bf16", "int8"]


BF16_SUITE = TINY_DEFAULTS + TINY_MODEL + """\
backends:
  - name: eager
    type: pytorch
    precisions: [bf16]
  - name: ov
    type: openvino
    precisions: [bf16]
  - name: ipex
    type: ipex
    environment: intel
    precisions: [bf16]
"""


def test_validate_warns_and_run_writes_rows_for_what_this_cpu_cannot_run(tmp_path):
    """On AVX2 (faked): IPEX bf16 refused, eager bf16 emulated and OpenVINO bf16 kept fp32 (neither measured), all
    without a worker, exit 0."""
    suite = write_suite(tmp_path, BF16_SUITE)
    avx2 = {cpu.FAKE_FLAGS_VAR: "avx2,fma"}
    checked = bench_cli("validate", suite, env=avx2)
    assert checked.returncode == 0, checked.stderr
    assert "backends[2].precisions (ipex bf16): bf16 on IPEX needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT; this CPU has" \
           " AVX2" in checked.stderr  # fmt: skip
    assert ("backends[0].precisions (eager bf16): bf16 is emulated on this CPU (no AVX512_BF16/AMX): not measured;"
            " `--emulated` measures it") in checked.stderr  # fmt: skip
    assert ("backends[1].precisions (ov bf16): OpenVINO runs a bf16 hint as f32 without AVX-512 BW/VL/DQ or"
            " AVX-NE-CONVERT; this CPU has AVX2: it would measure fp32 again; not measured; `--emulated` measures it"
            ) in checked.stderr  # fmt: skip
    assert "each compute node decides" in checked.stderr and cpu.FAKE_FLAGS_VAR in checked.stderr

    out = tmp_path / "run"
    only = ("--filter", "backend=eager", "--filter", "backend=ov", "--filter", "backend=ipex")
    ran = bench_cli("run", suite, "--out", out, *only, env=avx2)
    assert ran.returncode == 0, ran.stderr
    rows = {r["backend"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["ipex"]["status"] == "unsupported" and rows["ipex"]["cpu_support"]["tier"] == cpu.UNSUPPORTED
    assert rows["ipex"]["reason"] == "bf16 on IPEX needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT; this CPU has AVX2"
    assert rows["eager"]["status"] == "not_measured"
    assert rows["eager"]["reason"].endswith("not measured; `--emulated` measures it")
    assert rows["ov"]["status"] == "not_measured" and rows["ov"]["cpu_support"]["tier"] == cpu.KEPT_FP32
    assert rows["ov"]["reason"].endswith("it would measure fp32 again; not measured; `--emulated` measures it")
    for row in rows.values():
        assert not (out / "logs" / f"{row['case_id']}.log").exists()  # no worker started
    manifest_data = json.loads((out / "manifest.json").read_text())
    assert manifest_data["machine"]["cpu"]["fake_flags"] == ["avx2", "fma"]
    shown = bench_cli("show", out, env=avx2)
    assert shown.returncode == 0, shown.stderr
    first, second = shown.stdout.splitlines()[:2]
    assert "ISA tier AVX2 (bf16 emulated or unsupported, int8 without VNNI); flags faked" in first
    assert "1 not supported by their backend or this CPU, 2 not measured (emulated or kept fp32 on this CPU)" in second

    refused = bench_cli("baseline", "save", out, "nightly", env={BASELINES_VAR: str(tmp_path / "baselines")})
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "machine.cpu.fake_flags" in refused.stderr and cpu.FAKE_FLAGS_VAR in refused.stderr


def test_on_a_cpu_with_native_bf16_nothing_is_warned(tmp_path):
    suite = write_suite(tmp_path, BF16_SUITE)
    checked = bench_cli("validate", suite, env={cpu.FAKE_FLAGS_VAR: ",".join(SAPPHIRE_RAPIDS)})
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr


def test_a_baseline_recorded_before_the_new_flags_is_still_compared(tmp_path):
    old_manifest = manifest()
    old_manifest["machine"]["cpu"]["isa"] = {f: f in AVX2_EPYC for f in cpu.KEY_FLAGS}
    new_manifest = manifest()
    new_manifest["machine"]["cpu"]["isa"] = {f: f in AVX2_EPYC for f in cpu.ISA_FLAGS}
    env = {BASELINES_VAR: str(tmp_path / "baselines")}
    base = write_run(tmp_path / "old", suite_rows(), old_manifest)
    assert bench_cli("baseline", "save", base, "nightly", env=env).returncode == 0
    new = write_run(tmp_path / "new", suite_rows(), new_manifest)
    compared = bench_cli("compare", "--baseline", "nightly", new, env=env)
    assert compared.returncode == 0, compared.stderr
