"""Flow wiring that needs no Prefect server: the scheduled deployment and the flow parameters."""

from facesearch.settings import load_settings
from flows.common import flow_settings


def test_scheduled_deployment_uses_cron_from_settings():
    from flows.serve import deployment

    settings = load_settings(overrides={"schedule": {"cron": "15 4 * * 1", "deployment_name": "weekly"}})
    dep = deployment(settings)
    assert dep.name == "weekly"
    assert [s.schedule.cron for s in dep.schedules] == ["15 4 * * 1"]


def test_flow_parameters_become_settings(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("search:\n  k: 7\n")
    s = flow_settings([str(overlay)], ["index.nprobe=2"])
    assert (s.search.k, s.index.nprobe) == (7, 2)
