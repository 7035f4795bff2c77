"""Log-format strings and header lines: every version's fields, any order, unknown fields kept."""

import pytest

from natflow.flowlogs.fields import (
    DEFAULT_FORMAT,
    FIELD_VERSIONS,
    FormatError,
    canonical_name,
    header_format,
    parse_log_format,
)

SEED_ARTICLE_FORMAT = (
    "${region} ${vpc-id} ${az-id} ${subnet-id} ${instance-id} ${interface-id} ${flow-direction} "
    "${srcaddr} ${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${pkt-src-aws-service} "
    "${pkt-dst-aws-service} ${traffic-path} ${packets} ${bytes} ${action}"
)


def test_default_format_is_the_14_v2_fields() -> None:
    fmt = parse_log_format(DEFAULT_FORMAT, "default")
    assert len(fmt.fields) == 14
    assert all(FIELD_VERSIONS[name] == 2 for name in fmt.fields)


def test_seed_article_format_has_no_start_or_end() -> None:
    fmt = parse_log_format(SEED_ARTICLE_FORMAT, "article")
    assert fmt.missing("start", "end", "log-status") == ["start", "end", "log-status"]
    assert fmt.index("interface-id") == 5


def test_every_catalogued_field_parses_and_unknown_future_fields_are_kept() -> None:
    text = " ".join(f"${{{name}}}" for name in FIELD_VERSIONS) + " ${some-field-from-2030}"
    fmt = parse_log_format(text, "all")
    assert fmt.fields[-1] == "some-field-from-2030"
    assert len(fmt.fields) == len(FIELD_VERSIONS) + 1


@pytest.mark.parametrize("bad", ["", "${a} ${a}", "${1abc}"])
def test_bad_formats_are_rejected_with_the_origin(bad: str) -> None:
    with pytest.raises(FormatError, match=r"^--log-format"):
        parse_log_format(bad, "--log-format")


def test_header_lines_are_told_apart_from_records() -> None:
    header = header_format("version account-id interface-id srcaddr dstaddr srcport", "h")
    assert header is not None and header.fields[1] == "account-id"
    assert header_format("2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641", "h") is None
    assert header_format("- eni-1235b8ca123456789 10.0.1.5 10.0.0.220", "h") is None


def test_parquet_column_names_map_to_field_names() -> None:
    assert canonical_name("pkt_src_aws_service") == "pkt-src-aws-service"
    assert canonical_name("log_status") == "log-status"


V9_TO_V11 = {
    "resource-id": (9, "string"),
    "encryption-status": (10, "int"),
    "interface-type": (11, "string"),
    "next-hop-interface-id": (11, "string"),
    "next-hop-subnet-id": (11, "string"),
    "next-hop-az-id": (11, "string"),
    "next-hop-vpc-id": (11, "string"),
    "next-hop-interface-type": (11, "string"),
    "instance-tag": (11, "string"),
    "instance-tag-2": (11, "string"),
    "interface-tag": (11, "string"),
    "interface-tag-2": (11, "string"),
    "asg-tag": (11, "string"),
    "asg-tag-2": (11, "string"),
}


def test_fields_of_versions_9_to_11_are_catalogued_with_their_athena_types() -> None:
    from natflow.aws.athena import column_types

    assert {name: FIELD_VERSIONS[name] for name in V9_TO_V11} == {n: v for n, (v, _) in V9_TO_V11.items()}
    fmt = parse_log_format(" ".join(f"${{{name}}}" for name in V9_TO_V11), "v11")
    assert column_types(fmt) == [(name.replace("-", "_"), kind) for name, (_, kind) in V9_TO_V11.items()]
    # A header of them is a header (the parquet names map back to the fields).
    header = header_format(" ".join(V9_TO_V11), "h")
    assert header is not None and header.fields == tuple(V9_TO_V11)
    assert canonical_name("next_hop_az_id") == "next-hop-az-id"
