"""The CPU's ISA flags and what precision ``auto`` picks from them (torch-free)."""

import pytest

from librobot.core.errors import ConfigError
from librobot.core.hardware import cpu_info, hardware_summary, parse_cpuinfo, resolve_precision

XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n\nprocessor\t: 1\nflags\t: other\n"
EPYC_ZEN3 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd bf16 sve\n"
ORIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n"


def test_parse_reads_the_first_processor():
    cpu = parse_cpuinfo(XEON)
    assert cpu.model == "Intel(R) Xeon(R) Processor"
    assert cpu.isa == ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"]
    assert "other" not in cpu.flags


@pytest.mark.parametrize(
    ("text", "expected"), [(XEON, "bf16"), (EPYC_ZEN3, "fp32"), (GRAVITON3, "bf16"), (ORIN, "fp32"), ("", "fp32")]
)
def test_auto_is_bf16_only_where_the_cpu_multiplies_bf16_natively(text, expected):
    assert resolve_precision("auto", cpu=parse_cpuinfo(text)) == expected


def test_explicit_precisions_and_gpus():
    assert resolve_precision("fp32", cpu=parse_cpuinfo(XEON)) == "fp32"
    assert resolve_precision("fp16", cpu=parse_cpuinfo(EPYC_ZEN3)) == "fp16"
    assert resolve_precision("auto", device="cuda", gpu_bf16=True) == "bf16"
    assert resolve_precision("auto", device="cuda:0", gpu_bf16=False) == "fp16"


def test_unknown_precision_names_the_choices_and_the_close_one():
    with pytest.raises(ConfigError, match=r"'bf61' is not one of auto, fp32, bf16, fp16 \(did you mean 'bf16'\?\)"):
        resolve_precision("bf61")


def test_missing_cpuinfo_means_no_flags(tmp_path):
    cpu = cpu_info(tmp_path / "absent")
    assert cpu.flags == frozenset() and cpu.native_bf16 is False
    summary = hardware_summary()
    assert set(summary) == {"model", "isa", "inference precision auto"}
