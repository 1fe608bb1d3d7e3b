"""What a ChatRelease's status promises, told through the small world: conditions one
can wait on (issue 8 case 4), manual requests never lost (case 6), a weight, a switch or
a promotion recorded only once the router shows it (case 17), and the daemon's backoff
when looks keep failing (case 18)."""

from __future__ import annotations

from chatops.api.release_status import ChatReleaseStatus
from chatops.handlers.daemons import MAX_BACKOFF, Backoff
from chatops.release.model import Decision, Manual
from release_world import World, released, spec

PAUSES = {
    "canary": {
        "steps": [
            {"setWeight": 10},
            {"pause": {}},
            {"setWeight": 25},
            {"pause": {}},
            {"setWeight": 50},
            {"pause": {}},
            {"setWeight": 100},
        ]
    }
}


def _conditions(status: ChatReleaseStatus) -> dict[str, tuple[str, str, int | None]]:
    return {c.type: (c.status, c.reason, c.observed_generation) for c in status.conditions}


def test_complete_is_true_after_a_rollback_and_ready_only_once_the_spec_version_serves() -> None:
    world = released(World(spec()))
    done = _conditions(world.status)
    assert done["Complete"] == ("True", "Succeeded", 1)
    assert done["Ready"] == ("True", "Succeeded", 1)

    world.release("1.1")
    world.tick()
    moving = _conditions(world.status)
    assert moving["Complete"] == ("False", "Progressing", 2)
    assert moving["Ready"] == ("False", "Progressing", 2)
    assert moving["Progressing"][0] == "True"

    world.run_until(lambda w: w.status.canary_weight == 10)
    world.prometheus.values["green"] = 0.5
    world.routable = False  # the rollback's route change is not applied for a while
    world.run_until(lambda w: w.status.phase == "Degraded")
    world.tick()
    rolling = _conditions(world.status)
    assert world.serving()["api"]["green"] == 10  # the router still sends the canary some
    assert rolling["Complete"] == ("False", "Degraded", 2)
    assert rolling["Progressing"][0] == "True"
    world.routable = True
    world.run_until(lambda w: w.status.phase == "RolledBack")
    rolled = _conditions(world.status)
    assert rolled["Complete"] == ("True", "RolledBack", 2)
    assert rolled["Ready"] == ("False", "RolledBack", 2)

    world.prometheus.values["green"] = 0.0
    world.release("1.2")
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert _conditions(world.status)["Ready"] == ("True", "Succeeded", 3)


def test_a_stamped_request_asks_what_its_bare_value_asks() -> None:
    stamp = "2026-12-01T23:00:00.123456Z"
    assert Manual.read({"chatops.dev/promote": f"full@{stamp}"}).promote == "full"
    assert Manual.read({"chatops.dev/promote": f"step@{stamp}"}).promote == "step"
    assert Manual.read({"chatops.dev/promote": "step"}).promote == "step"
    assert Manual.read({"chatops.dev/promote": ""}).promote == "step"
    assert Manual.read({"chatops.dev/abort": "true@2026-12-01T23:00:00Z"}).abort
    assert Manual.read({}) == Manual()


class _Racing(World):
    """A world where a second `chatops promote` lands between the look's read and its
    removal of the first."""

    second: str | None = None

    def apply(self, decision: Decision) -> None:
        if self.second is not None:
            self.annotations["chatops.dev/promote"], self.second = self.second, None
        super().apply(decision)


def test_a_promote_written_between_read_and_removal_is_acted_on_next() -> None:
    world = released(_Racing(spec(strategy=PAUSES)))
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.status.canary_weight == 10
    world.annotations["chatops.dev/promote"] = "step@2026-12-01T23:00:00.000001Z"
    world.second = "step@2026-12-01T23:00:00.000002Z"
    world.tick()  # acts on the first; its removal finds the second and keeps it
    assert world.annotations["chatops.dev/promote"] == "step@2026-12-01T23:00:00.000002Z"
    world.run_until(lambda w: w.status.canary_weight == 50)
    assert "chatops.dev/promote" not in world.annotations
    world.run_until(lambda w: w.status.phase == "Paused")
    assert world.status.canary_weight == 50  # two requests, two steps, no more


def test_a_first_release_without_a_route_is_never_succeeded() -> None:
    world = World(spec(), routable=False)
    for _ in range(30):
        world.tick()
    assert world.status.phase == "Progressing" and world.status.stable_revision is None
    assert "waiting for the router" in (world.status.message or "")
    assert _conditions(world.status)["Ready"][0] == "False"


def test_no_weight_is_recorded_while_the_router_applies_nothing() -> None:
    world = released(World(spec()))
    world.routable = False
    world.release("1.1")
    for _ in range(60):
        world.tick()
    assert world.status.canary_weight == 0 and world.status.current_step == 0
    assert world.status.phase == "Progressing" and world.status.stable_version == (
        "chat-api:1.0,chat-web:1.0"
    )
    assert "setting 10%" in (world.status.message or "")
    assert not [r for r, _ in world.events if r in ("WeightSet", "Promoted")]
    world.routable = True
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.stable_version == "chat-api:1.1,chat-web:1.1"


def test_a_blue_green_switch_is_recorded_only_once_the_router_shows_it() -> None:
    strategy = {"blueGreen": {"postPromotionWindow": "10s"}}
    world = released(World(spec(strategy=strategy)))
    world.routable = False
    world.release("1.1")
    for _ in range(40):
        world.tick()
    assert (world.status.canary_weight or 0) < 100 and world.status.active_color == "blue"
    assert "switching traffic to green" in (world.status.message or "")
    assert not [r for r, _ in world.events if r in ("TrafficSwitched", "Promoted")]
    world.routable = True
    world.run_until(lambda w: w.status.phase == "Succeeded")
    assert world.status.active_color == "green"


def test_a_full_promote_moves_all_traffic_before_the_new_version_is_stable() -> None:
    world = released(World(spec(strategy=PAUSES)))
    world.release("1.1")
    world.run_until(lambda w: w.status.phase == "Paused")
    world.routable = False
    world.annotations["chatops.dev/promote"] = "full"
    for _ in range(10):
        world.tick()
    assert world.status.stable_version == "chat-api:1.0,chat-web:1.0"
    assert "moving all traffic to green" in (world.status.message or "")
    world.routable = True
    world.run_until(lambda w: w.status.phase in ("Promoting", "Succeeded"))
    assert world.serving() == {"api": {"green": 100}, "web": {"green": 100}}


def test_failing_looks_back_off_up_to_a_cap_and_a_good_look_resets() -> None:
    backoff = Backoff()
    delays = [backoff.failed() for _ in range(10)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert delays == sorted(delays) and max(delays) == MAX_BACKOFF
    backoff.succeeded()
    assert backoff.failed() == 5.0
