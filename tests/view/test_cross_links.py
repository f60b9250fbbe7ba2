"""Cross-links and the chain's anchors: a month's Dagster metadata links to its pages in the admin view (no
file:// links), and the view's "Verify the chain" checks the Dagster event log's anchors as
`batch-admin audit --verify` does."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import dagster as dg
import pytest

from assets.monthly import monthly_assets, version_metadata
from batch.audit import ANCHOR_METADATA, anchor_text
from batch.report import version_view
from batch_cli.instance import prepare
from pipelines.definitions import defs
from tests.cli.test_cli_views import cli
from tests.signing import ticket_tags


def urls(metadata: dict) -> dict[str, str]:
    return {name: value.value for name, value in metadata.items() if isinstance(value, dg.UrlMetadataValue)}


@pytest.mark.parametrize(("env", "origin"), [
    ({}, "http://localhost:3000"),
    ({"BATCH_ADMIN_VIEW_URL": "http://localhost:3100"}, "http://localhost:3100"),
    ({"BATCH_ADMIN_VIEW_URL": "http://localhost:3100", "BATCH_ADMIN_ORIGIN": "https://batch.example.org/"},
     "https://batch.example.org")])
def test_a_versions_metadata_links_to_its_month_page_and_report_in_the_view(landed, client, monkeypatch, env, origin):
    for name in ("BATCH_ADMIN_VIEW_URL", "BATCH_ADMIN_ORIGIN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    src = client.app.state.sources
    metadata = version_metadata(version_view(src.store, src.exports, landed.month, 2))

    assert urls(metadata) == {"month page": f"{origin}/month/{landed.month}",
                              "report": f"{origin}/month/{landed.month}/report/2"}
    assert isinstance(metadata["report file"], dg.PathMetadataValue)  # the file stays, for data engineers
    assert metadata["report file"].value == str(src.exports.report_path(landed.month, 2))
    page = client.get(urlsplit(urls(metadata)["report"]).path)
    assert page.status_code == 200 and f"{landed.month}" in page.text
    assert client.get(urlsplit(urls(metadata)["month page"]).path).status_code == 200


def test_the_input_validation_links_to_the_month_page(landed, client):
    prepare()
    result = dg.materialize([a for a in monthly_assets if a.key.to_user_string() in ("landed_inputs", "validated_inputs")],
                            partition_key=landed.month, instance=client.app.state.sources.instance(),
                            resources=defs.resources, tags=ticket_tags("alice", "__ephemeral_asset_job__", landed.month))
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "validated_inputs"]
    assert urls(event.materialization.metadata) == {"month page": f"http://localhost:3000/month/{landed.month}"}


def anchor_event(month: str, text: str) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(asset_key="allocation_export", partition=month,
                                   metadata={ANCHOR_METADATA: dg.MetadataValue.text(text)})


def test_verify_the_chain_checks_the_dagster_event_logs_anchors_as_the_cli_does(landed, client):
    check = f"/month/{landed.month}/audit.json"
    without = client.get(check).json()
    assert without["ok"] and not without["dagster"]
    prepare()
    instance = client.app.state.sources.instance()
    store = client.app.state.sources.store
    instance.report_runless_asset_event(anchor_event(landed.month, anchor_text(store.audit_anchor())))

    found = client.get(check).json()
    assert found["ok"] and found["dagster"] and found["anchors"] == without["anchors"] + 1
    verified = json.loads(cli("audit", "--verify", "--json").output)
    assert (verified["ok"], verified["anchors"]) == (True, found["anchors"])

    # The log rewritten after the anchor was kept in Dagster's event log: both refuse it, naming the event log.
    head = store.audit_anchor()
    instance.report_runless_asset_event(anchor_event(landed.month, anchor_text({**head, "last_hash": "0" * 64})))
    tampered = client.get(check).json()
    assert not tampered["ok"] and any("the Dagster event log (allocation_export" in p for p in tampered["problems"])
    failed = cli("audit", "--verify", ok=False)
    assert "the Dagster event log (allocation_export" in failed.stderr
    assert "Tampered with" in client.get(f"/month/{landed.month}/audit").text
