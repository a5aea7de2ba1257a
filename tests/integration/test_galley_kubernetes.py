"""KubernetesSource against the API fake through kubernetes-asyncio: list, watch, 410, filters.

The kinds are the tests' own (Widget, a custom resource, and a core ConfigMap kind defined here)
so the tests never depend on which Istio kinds exist yet; only the status test uses the real Pod
kind, whose status the service registry needs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import Field

from galley.sources.kubernetes import ORIGIN, KubernetesSource
from galley.store import ConfigStore, Key
from meshconfig import Kind, kind_for, kinds, validate_document
from meshconfig.base import SpecModel
from meshconfig.kube import PodStatus
from meshcore.kube import api_client_factory
from tests.support.kube_fake import KubeFake
from tests.unit.galley.galley_test_kind import GROUP, WIDGET, widget_kind


class ConfigMapBody(SpecModel):
    data: dict[str, str] = Field(default_factory=dict)


CONFIG_MAP = Kind("", "ConfigMap", "configmaps", ("v1",), ConfigMapBody, spec_is_whole_object=True)
WIDGET_API = f"{GROUP}/v1"
POLL_S = 0.01
WAIT_S = 5.0


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition`, polling at most WAIT_S seconds."""
    for _ in range(int(WAIT_S / POLL_S)):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"condition not met within {WAIT_S}s")


def widget(
    name: str, ns: str = "default", host: str = "a.example.com", port: Any = 80
) -> dict[str, Any]:
    return {
        "apiVersion": WIDGET_API,
        "kind": "Widget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"host": host, "port": port},
    }


def key(name: str, ns: str = "default", kind: Kind = WIDGET) -> Key:
    return (kind.id, ns, name)


@pytest.fixture(autouse=True)
def _test_kinds() -> Iterator[None]:
    table = kinds._table()
    previous = table.get(("", "ConfigMap"))
    table["", "ConfigMap"] = CONFIG_MAP
    try:
        with widget_kind():
            yield
    finally:
        if previous is None:
            del table["", "ConfigMap"]
        else:
            table["", "ConfigMap"] = previous


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake(bookmark_interval=0.05) as fake:
        fake.add_custom_resource(GROUP, ("v1",), "Widget", "widgets")
        yield fake


@pytest.fixture
def store() -> ConfigStore:
    return ConfigStore()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_source(
    kube: KubeFake, store: ConfigStore, registry: CollectorRegistry
) -> Callable[..., KubernetesSource]:
    def make(**options: Any) -> KubernetesSource:
        options.setdefault("kinds", [WIDGET, CONFIG_MAP])
        return KubernetesSource(
            store,
            api_client_factory(kube.url),
            backoff=(0.01, 0.1),
            registry=registry,
            **options,
        )

    return make


@contextlib.asynccontextmanager
async def running(source: KubernetesSource) -> AsyncIterator[KubernetesSource]:
    """Run the source until the block ends, then check that cancelling it left nothing."""
    before = asyncio.all_tasks()
    task = asyncio.create_task(source.run())
    try:
        async with asyncio.timeout(WAIT_S):
            await source.synced.wait()
        yield source
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # The fake's handlers of the closed watches end a moment later, in this same loop.
        started = [t for t in asyncio.all_tasks() - before if not t.done()]
        if started:
            await asyncio.wait(started, timeout=1.0)
        leftover = [t for t in started if not t.done()]
        assert not leftover, f"tasks left pending after the source stopped: {leftover}"


def widgets(store: ConfigStore) -> dict[Key, Any]:
    return {k: r.spec_dict() for k, r in store.snapshot.resources.items() if k[0] == WIDGET.id}


def failures(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("galley_validation_failed_total", {"source": ORIGIN})
    return value or 0.0


def watch_versions(kube: KubeFake) -> list[str]:
    return [
        r.query["resourceVersion"]
        for r in kube.requests
        if r.path.endswith("/widgets") and r.query.get("watch")
    ]


def lists(kube: KubeFake) -> int:
    return sum(1 for r in kube.requests if r.path.endswith("/widgets") and not r.query.get("watch"))


async def test_the_initial_list_lands_in_the_store(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    kube.create(widget("a"))
    kube.create(widget("b", ns="other", port=8080))
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {}})
    async with running(make_source()):
        assert widgets(store) == {
            key("a"): {"host": "a.example.com", "port": 80},
            key("b", "other"): {"host": "a.example.com", "port": 8080},
        }
        config_map = store.snapshot.resources[key("m", kind=CONFIG_MAP)]
        assert config_map.source == ORIGIN
        assert store.owner(key("a")) == ORIGIN
        assert len(store.history()) == 2  # one atomic change per kind


async def test_watch_events_arrive(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    kube.create(widget("a"))
    async with running(make_source()):
        kube.create(widget("b"))
        await until(lambda: key("b") in store.snapshot.resources)
        kube.update(widget("a", port=81))
        await until(lambda: widgets(store)[key("a")]["port"] == 81)
        kube.delete(WIDGET_API, "Widget", "b")
        await until(lambda: key("b") not in store.snapshot.resources)
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}})
        await until(lambda: key("m", kind=CONFIG_MAP) in store.snapshot.resources)


async def test_an_invalid_object_is_reported_and_skipped(
    kube: KubeFake,
    store: ConfigStore,
    registry: CollectorRegistry,
    make_source: Callable[..., KubernetesSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube.create(widget("listed-bad", port=0))
    kube.create(widget("a"))
    async with running(make_source()) as source:
        assert set(widgets(store)) == {key("a")}
        assert "spec.port" in source.errors[key("listed-bad")]
        kube.update(widget("a", port=70000))
        await until(lambda: key("a") in source.errors)
        assert "kubernetes: Widget default/a: spec.port" in source.errors[key("a")]
        assert "spec.port" in caplog.text
        assert widgets(store)[key("a")]["port"] == 80  # the accepted version stays
        assert failures(registry) == 2

        kube.update(widget("a", port=82))
        await until(lambda: widgets(store)[key("a")]["port"] == 82)
        assert key("a") not in source.errors
        kube.delete(WIDGET_API, "Widget", "listed-bad")
        await until(lambda: key("listed-bad") not in source.errors)


async def test_a_key_another_origin_owns_is_refused(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    owner = "file:/etc/mesh/a.yaml"
    store.apply(owner, [validate_document(widget("a", host="from.file"), "/etc/mesh/a.yaml")])
    kube.create(widget("a", host="from.kubernetes"))
    kube.create(widget("b"))
    async with running(make_source()) as source:
        assert f"is already defined by {owner}" in source.errors[key("a")]
        assert store.owner(key("a")) == owner
        assert widgets(store)[key("a")]["host"] == "from.file"
        assert store.owner(key("b")) == ORIGIN


async def test_410_relists_and_converges(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    kube.create(widget("stays"))
    kube.create(widget("deleted"))
    kube.create(widget("edited"))
    async with running(make_source()):
        await until(lambda: kube.open_watches == 2)
        listed_before = lists(kube)
        # While the watch is down: changes, then the log forgets them.
        kube.break_watches()
        kube.delete(WIDGET_API, "Widget", "deleted")
        kube.create(widget("added"))
        kube.update(widget("edited", port=90))
        kube.compact()
        await until(lambda: set(widgets(store)) == {key("stays"), key("added"), key("edited")})
        assert widgets(store)[key("edited")]["port"] == 90
        assert lists(kube) == listed_before + 1
        # And it watches on from the new list.
        kube.create(widget("later"))
        await until(lambda: key("later") in store.snapshot.resources)


async def test_a_watch_resumes_from_the_last_bookmark(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    async with running(make_source(kinds=[WIDGET])) as source:
        await until(lambda: kube.open_watches == 1)
        listed_at = watch_versions(kube)[0]
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}})
        newest = kube.resource_version
        await until(lambda: source.status()[WIDGET.id]["resourceVersion"] == newest)
        kube.break_watches()
        await until(lambda: len(watch_versions(kube)) == 2)
        assert watch_versions(kube) == [listed_at, newest]
        assert lists(kube) == 1


async def test_the_namespace_filter(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    kube.create(widget("a", ns="one"))
    kube.create(widget("b", ns="two"))
    kube.create(widget("c", ns="three"))
    async with running(make_source(namespaces=["one", "two"])):
        assert set(widgets(store)) == {key("a", "one"), key("b", "two")}
        kube.create(widget("d", ns="three"))
        kube.create(widget("e", ns="two"))
        await until(lambda: key("e", "two") in store.snapshot.resources)
        assert key("d", "three") not in store.snapshot.resources
        watched = {
            f"/apis/{GROUP}/v1/namespaces/one/widgets",
            f"/apis/{GROUP}/v1/namespaces/two/widgets",
            "/api/v1/namespaces/one/configmaps",
            "/api/v1/namespaces/two/configmaps",
        }
        await until(lambda: {r.path for r in kube.requests if r.query.get("watch")} == watched)


async def test_errors_back_off_and_recover(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    kube.create(widget("a"))
    kube.fail_requests(6, 503, "ServiceUnavailable")
    async with running(make_source(kinds=[WIDGET])):
        assert set(widgets(store)) == {key("a")}
        kube.create(widget("b"))
        await until(lambda: key("b") in store.snapshot.resources)
    assert len(kube.requests) > 6


async def test_a_kind_the_server_does_not_serve_counts_as_empty_until_it_is(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    gadget = Kind(GROUP, "Gadget", "gadgets", ("v1",), WIDGET.spec_model)
    kinds._table()[GROUP, "Gadget"] = gadget
    try:
        async with running(make_source(kinds=[WIDGET, gadget], absent_retry=0.05)):
            assert not store.snapshot.resources
            kube.add_custom_resource(GROUP, ("v1",), "Gadget", "gadgets")
            kube.create({**widget("g"), "kind": "Gadget"})
            await until(lambda: key("g", kind=gadget) in store.snapshot.resources)
    finally:
        del kinds._table()[GROUP, "Gadget"]


def pod(name: str, ip: str | None = None) -> dict[str, Any]:
    """A Pod; with `ip`, running with that address (its status as the kubelet reports it)."""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    if ip is not None:
        obj["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    return obj


async def test_pod_status_reaches_the_store(
    kube: KubeFake, store: ConfigStore, make_source: Callable[..., KubernetesSource]
) -> None:
    pods = kind_for("v1", "Pod")
    assert pods is not None

    def pod_ip(name: str) -> str | None:
        resource = store.snapshot.resources.get(key(name, kind=pods))
        status = resource.status if resource is not None else None
        return status.pod_ip if isinstance(status, PodStatus) else None

    kube.create(pod("listed", "10.244.0.5"))
    kube.create(pod("pending"))
    async with running(make_source(kinds=[pods])):
        assert pod_ip("listed") == "10.244.0.5"
        assert store.snapshot.resources[key("pending", kind=pods)].status is None
        kube.update(pod("pending", "10.244.0.6"))
        await until(lambda: pod_ip("pending") == "10.244.0.6")
