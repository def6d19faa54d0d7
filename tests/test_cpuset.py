"""CpuSet reads and writes every form the kernel and NVML use, exactly, and names bad text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpunuma.core.cpuset import LIMIT, CpuSet, node_list, parse_ids
from gpunuma.errors import CpuSetParseError

cpu_ids = st.frozensets(st.integers(min_value=0, max_value=1023), max_size=64)


class TestCpulist:
    @pytest.mark.parametrize(
        "text",
        ["0", "0-3", "0-55,112-167", "56-111,168-223", "0,2,4", "0-3,8-11,14,17", "1023"],
    )
    def test_canonical_text_round_trips_exactly(self, text: str) -> None:
        assert CpuSet.parse_list(text).to_list() == text

    @pytest.mark.parametrize(
        ("text", "canonical"),
        [("3,0-2", "0-3"), ("0-1,1-2", "0-2"), (" 0-3\n", "0-3"), ("5-5", "5"), ("0, 2", "0,2")],
    )
    def test_other_spellings_read_to_the_canonical_form(self, text: str, canonical: str) -> None:
        assert CpuSet.parse_list(text).to_list() == canonical

    def test_dgx_h100_node_0_has_112_cpus_in_two_runs(self) -> None:
        node0 = CpuSet.parse_list("0-55,112-167")
        assert len(node0) == 56 + 56
        assert node0.ranges() == [(0, 55), (112, 167)]

    def test_empty_text_is_the_empty_set_and_prints_empty(self) -> None:
        assert CpuSet.parse_list("") == CpuSet()
        assert CpuSet().to_list() == ""
        assert not CpuSet.parse_list("  \n")

    @pytest.mark.parametrize("text", ["a", "1-", "-1", "3-1", "1,,2", "0-3:2", "1.5", "0x3", "all"])
    def test_malformed_text_raises_naming_the_text(self, text: str) -> None:
        with pytest.raises(CpuSetParseError) as caught:
            CpuSet.parse_list(text)
        assert caught.value.text == text
        assert repr(text) in str(caught.value)

    @settings(max_examples=200, deadline=None)
    @given(cpu_ids)
    def test_any_set_round_trips_through_its_cpulist(self, ids: frozenset[int]) -> None:
        cpus = CpuSet(ids)
        assert CpuSet.parse_list(cpus.to_list()) == cpus


class TestKernelText:
    """What a kernel file or buffer carries around the list, and text no kernel writes."""

    @pytest.mark.parametrize("text", ["0-3\n", "0-3\x00", "0-3\n\x00\x00", "\t0-3 \n"])
    def test_trailing_newline_padding_and_nul_bytes_are_ignored(self, text: str) -> None:
        assert CpuSet.parse_list(text).to_list() == "0-3"
        assert CpuSet.parse_mask(text.replace("0-3", "f")).to_list() == "0-3"

    @pytest.mark.parametrize(
        "text", ["0-100000000", "0-4294967295", f"0-{LIMIT}", str(LIMIT), "1" * 5000, "0-" + "9" * 5000]
    )
    def test_an_id_beyond_the_limit_raises_at_once_without_expanding(self, text: str) -> None:
        with pytest.raises(CpuSetParseError, match="beyond") as caught:
            CpuSet.parse_list(text)
        assert caught.value.text == text

    def test_the_highest_id_below_the_limit_is_accepted(self) -> None:
        assert CpuSet.parse_list(f"{LIMIT - 2}-{LIMIT - 1}").ranges() == [(LIMIT - 2, LIMIT - 1)]

    def test_overlapping_ranges_that_span_more_than_the_limit_raise(self) -> None:
        text = ",".join([f"0-{LIMIT - 1}"] * 1000)  # 65 million ids counting repeats
        with pytest.raises(CpuSetParseError, match="span more than"):
            CpuSet.parse_list(text)

    def test_non_ascii_digits_are_not_ids(self) -> None:
        with pytest.raises(CpuSetParseError):
            CpuSet.parse_list("\u0663")  # ARABIC-INDIC DIGIT THREE: int() would read it as 3

    def test_a_mask_wider_than_the_limit_raises(self) -> None:
        with pytest.raises(CpuSetParseError, match="words"):
            CpuSet.parse_mask(",".join(["0"] * (LIMIT // 32 + 1)))

    def test_too_many_words_raise(self) -> None:
        with pytest.raises(CpuSetParseError, match="words"):
            CpuSet.from_nvml_words([0] * (LIMIT // 64 + 1))

    def test_an_id_at_the_limit_is_not_a_cpu(self) -> None:
        with pytest.raises(CpuSetParseError):
            CpuSet.of([LIMIT])
        with pytest.raises(CpuSetParseError):
            CpuSet.range(0, LIMIT)

    def test_parse_ids_is_the_bare_form_of_parse_list(self) -> None:
        assert parse_ids("0-1,4\n") == frozenset({0, 1, 4}) == CpuSet.parse_list("0-1,4").ids

    def test_node_list_text_is_the_kernel_form(self) -> None:
        assert node_list([1, 0, 4]) == "0-1,4"
        assert node_list(()) == ""


class TestHexMask:
    @pytest.mark.parametrize(
        ("cpulist", "words", "mask"),
        [
            ("0-3", 1, "0000000f"),
            ("0-3", 2, "00000000,0000000f"),
            ("0-15", 1, "0000ffff"),
            ("32", 2, "00000001,00000000"),
            ("0-63", 2, "ffffffff,ffffffff"),
            ("", 1, "00000000"),
            ("0,31,32,63,64", 3, "00000001,80000001,80000001"),
        ],
    )
    def test_mask_with_a_given_word_count_round_trips(self, cpulist: str, words: int, mask: str) -> None:
        cpus = CpuSet.parse_list(cpulist)
        assert cpus.to_mask(words) == mask
        assert CpuSet.parse_mask(mask) == cpus

    def test_default_word_count_is_the_fewest_that_hold_the_set(self) -> None:
        assert CpuSet.parse_list("0-55,112-167").to_mask().count(",") + 1 == 168 // 32 + 1

    def test_short_words_and_uppercase_read_as_the_kernel_means(self) -> None:
        assert CpuSet.parse_mask("FFFF").to_list() == "0-15"
        assert CpuSet.parse_mask("1,0").to_list() == "32"

    @pytest.mark.parametrize(
        ("cpulist", "nbits", "mask"),
        [("0-3", 4, "f"), ("0-3", 224, "00000000,00000000,00000000,00000000,00000000,00000000,0000000f"),
         ("0-2,10", 1024 - 1000, "000407"), ("32", 40, "01,00000000"), ("0", 32, "00000001")],
    )
    def test_a_bitmap_of_nbits_prints_as_the_kernel_prints_it(self, cpulist: str, nbits: int, mask: str) -> None:
        """``%*pb``: the leading word has only the hex digits ``nbits`` needs."""
        cpus = CpuSet.parse_list(cpulist)
        assert cpus.to_mask(nbits=nbits) == mask
        assert CpuSet.parse_mask(mask) == cpus

    def test_too_few_words_to_hold_the_set_is_refused(self) -> None:
        with pytest.raises(ValueError, match="1 words cannot hold CPU 32"):
            CpuSet.of([32]).to_mask(1)

    @pytest.mark.parametrize("text", ["", "xyz", "123456789", "ff,,ff", "0x0f", "ff ff"])
    def test_malformed_mask_raises_naming_the_text(self, text: str) -> None:
        with pytest.raises(CpuSetParseError) as caught:
            CpuSet.parse_mask(text)
        assert caught.value.text == text

    @settings(max_examples=200, deadline=None)
    @given(cpu_ids, st.integers(min_value=0, max_value=4))
    def test_any_set_round_trips_through_a_wider_mask(self, ids: frozenset[int], extra: int) -> None:
        cpus = CpuSet(ids)
        words = (max(ids) // 32 + 1 if ids else 1) + extra
        mask = cpus.to_mask(words)
        assert len(mask.split(",")) == words
        assert CpuSet.parse_mask(mask) == cpus


class TestNvmlWords:
    def test_vm_gpu_affinity_word_is_cpus_0_to_15(self) -> None:
        assert CpuSet.from_nvml_words([0xFFFF]).to_list() == "0-15"

    @pytest.mark.parametrize(
        ("cpulist", "words", "expected"),
        [
            ("0-15", 1, [0xFFFF]),
            ("64", 2, [0, 1]),
            ("0-55,112-167", 4, [(1 << 56) - 1, ((1 << 16) - 1) << 48, (1 << 40) - 1, 0]),
            ("", 2, [0, 0]),
        ],
    )
    def test_words_round_trip(self, cpulist: str, words: int, expected: list[int]) -> None:
        cpus = CpuSet.parse_list(cpulist)
        assert cpus.to_nvml_words(words) == expected
        assert CpuSet.from_nvml_words(expected) == cpus

    @pytest.mark.parametrize("words", [[-1], [1 << 64], ["ff"], [0, 1.0]])
    def test_a_word_that_is_not_an_unsigned_64_bit_int_raises(self, words: list[object]) -> None:
        with pytest.raises(CpuSetParseError) as caught:
            CpuSet.from_nvml_words(words)  # type: ignore[arg-type]
        assert caught.value.text == words

    def test_too_few_words_to_hold_the_set_is_refused(self) -> None:
        with pytest.raises(ValueError, match="1 words cannot hold CPU 64"):
            CpuSet.of([64]).to_nvml_words(1)

    @settings(max_examples=200, deadline=None)
    @given(cpu_ids)
    def test_any_set_round_trips_through_nvml_words(self, ids: frozenset[int]) -> None:
        cpus = CpuSet(ids)
        assert CpuSet.from_nvml_words(cpus.to_nvml_words()) == cpus


class TestAlgebra:
    def test_cgroup_intersection_keeps_only_allowed_cpus(self) -> None:
        node1 = CpuSet.parse_list("56-111,168-223")
        allowed = CpuSet.parse_list("0-47,112-159")
        assert not (node1 & allowed)
        assert node1.isdisjoint(allowed)
        assert (CpuSet.parse_list("0-55,112-167") & allowed).to_list() == "0-47,112-159"

    def test_union_difference_and_order(self) -> None:
        a, b = CpuSet.parse_list("0-3"), CpuSet.parse_list("2-5")
        assert (a | b).to_list() == "0-5"
        assert (a - b).to_list() == "0-1"
        assert CpuSet.parse_list("1-2") < a <= a
        assert list(CpuSet.parse_list("9,1,5")) == [1, 5, 9]

    def test_negative_ids_are_rejected(self) -> None:
        with pytest.raises(CpuSetParseError):
            CpuSet.of([-1])
