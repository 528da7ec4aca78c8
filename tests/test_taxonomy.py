from pathlib import Path

import pytest

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.taxonomy import Taxonomy, load_taxonomy

MINIMAL = """
name: t
categories:
  - name: Hardware
    default_group: Desk
    subcategories: [Laptop, Printer]
  - name: Network
    subcategories: [VPN]
applications: [None]
urgency: [High, Low]
impact: [One, Many]
assignment_groups: [Desk, Net]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_taxonomy_is_realistic(taxonomy: Taxonomy) -> None:
    assert len(taxonomy.categories) >= 8
    assert sum(len(c.subcategories) for c in taxonomy.categories) >= 40
    assert len(taxonomy.applications) >= 15
    assert len(taxonomy.assignment_groups) >= 10
    groups = set(taxonomy.choices("assignment_group"))
    assert all(c.default_group in groups for c in taxonomy.categories)


def test_minimal_taxonomy_loads(tmp_path: Path) -> None:
    loaded = load_taxonomy(write(tmp_path, MINIMAL))
    assert loaded.choices("subcategory", "Hardware") == ("Laptop", "Printer")
    assert loaded.choices("urgency") == ("High", "Low")


def test_a_taxonomy_may_define_some_fields_only(tmp_path: Path) -> None:
    groups = load_taxonomy(write(tmp_path, "name: g\nassignment_groups: [Desk, Net]\n"))
    assert groups.fields == ("assignment_group",)
    assert groups.choices("assignment_group") == ("Desk", "Net")
    with pytest.raises(ValueError, match="does not define category"):
        groups.choices("category")
    flat = load_taxonomy(write(tmp_path, "name: f\ncategories: [Hardware, Network]\nurgency: [High, Low]\n"))
    assert flat.fields == ("category", "urgency")
    assert load_taxonomy(write(tmp_path, MINIMAL)).fields == (
        "category",
        "subcategory",
        "application",
        "urgency",
        "impact",
        "assignment_group",
    )


def test_fingerprint_changes_with_labels(tmp_path: Path) -> None:
    one = load_taxonomy(write(tmp_path, MINIMAL))
    two = load_taxonomy(write(tmp_path, MINIMAL.replace("VPN", "VPN, Wi-Fi")))
    assert one.fingerprint() != two.fingerprint()
    assert one.fingerprint() == load_taxonomy(write(tmp_path, MINIMAL)).fingerprint()


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            MINIMAL.replace("[Laptop, Printer]", "[Laptop, laptop]"),
            "categories[0]: duplicate label 'laptop' in subcategories of 'Hardware'",
        ),
        (MINIMAL.replace("[High, Low]", "[High, High]"), "duplicate label 'High' in urgency"),
        (MINIMAL.replace("default_group: Desk", "default_group: Nowhere"), "default_group 'Nowhere', which is not in"),
        (MINIMAL.replace("[VPN]", "[]"), "category 'Network' has no subcategories but others do"),
        ("name: t\napplications: []\n", "a taxonomy defines at least one of: categories, applications"),
        (MINIMAL.replace("name: Network", "name: 'Net\"work'"), "categories[1].name: is not a valid label: no quotes"),
        (MINIMAL.replace("urgency:", "urgncy:"), "urgncy: is not a known key"),
        (MINIMAL.replace("urgency: [High, Low]", "urgency: [High, Low"), "invalid YAML"),
        ("", "the file is empty"),
    ],
)
def test_broken_taxonomy_gives_one_clear_message(tmp_path: Path, broken: str, expected: str) -> None:
    path = write(tmp_path, broken)
    with pytest.raises(ConfigError) as info:
        load_taxonomy(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_taxonomy(tmp_path / "nope.yaml")


def test_yaml_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        load_taxonomy(write(tmp_path, MINIMAL.replace("urgency: [High, Low]", "urgency: [High, Low")))
