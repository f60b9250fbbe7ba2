"""What the README says of the demo month is what `make demo` generates."""

from __future__ import annotations

import re
from pathlib import Path

from batch.demo_data import SERVICE_DEMAND_RATIO, generate_month

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_counts_the_demo_months_requests_resources_services_and_regions_right():
    readme = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(r"`make demo` generates a demo month \(([\d,]+) requests, ([\d,]+) resources, (\d+) services, "
                     r"(\d+) regions, (\w+) and (\w+) short of capacity\)", readme)
    made = re.search(r"demo-data \$\(MONTH\) --requests (\d+) --resources (\d+) --seed (\d+)",
                     (ROOT / "Makefile").read_text())
    assert said and made

    tables = generate_month("2027-01", requests=int(made[1]), resources=int(made[2]), seed=int(made[3]))

    requests, resources = tables["requests"], tables["resources"]
    assert (int(said[1].replace(",", "")), int(said[2].replace(",", ""))) == (len(requests), len(resources))
    assert (int(said[3]), int(said[4])) == (resources["service"].nunique(), resources["region"].nunique())
    short = {s for s, ratio in SERVICE_DEMAND_RATIO.items() if ratio > 1}
    assert {said[5], said[6]} == short
