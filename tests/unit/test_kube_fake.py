"""The Kubernetes API fake, driven by kubernetes-asyncio's real client as our services drive it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.kube_fake import KubeFake, LabelSelector

CRDS = Path(__file__).parents[3] / "shared" / "istio" / "crds" / "crd-all.gen.yaml"


@pytest.fixture
async def kube() -> AsyncIterator[KubeFake]:
    async with KubeFake(bookmark_interval=0.05) as fake:
        fake.add_custom_resource(
            "networking.istio.io", ("v1", "v1beta1"), "ServiceEntry", "serviceentries"
        )
        yield fake


@pytest.fixture
async def api(kube: KubeFake) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(client.Configuration(host=kube.url)) as api_client:
        yield api_client


def service(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"port": 80}]},
    }


def service_model(name: str) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
    )


def service_entry(name: str, namespace: str = "default", host: str = "a.example") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host]},
    }


async def take(stream: watch.Watch, count: int) -> list[dict[str, Any]]:
    """The next `count` events of a watch (bookmarks included), within five seconds."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(out) < count:
            out.append(await stream.__anext__())
    return out


async def until(condition: Callable[[], bool]) -> None:
    """Poll `condition` every 10 ms for at most five seconds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5s")


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["raw_object"]["metadata"].get("name", "")) for e in events]


async def test_discovery_answers_the_client(kube: KubeFake, api: client.ApiClient) -> None:
    version = await client.VersionApi(api).get_code()
    assert version.major == "1"
    core = await client.CoreApi(api).get_api_versions()
    assert core.versions == ["v1"]
    groups = {g.name: g for g in (await client.ApisApi(api).get_api_versions()).groups}
    assert groups["networking.istio.io"].preferred_version.version == "v1"
    assert [v.version for v in groups["networking.istio.io"].versions] == ["v1", "v1beta1"]
    resources = await client.CoreV1Api(api).get_api_resources()
    assert {"services", "namespaces"} <= {r.name for r in resources.resources}
    async with aiohttp.ClientSession() as session:
        for path in ("/apis/", "/version/", "/api/", "/apis/networking.istio.io/v1beta1/"):
            async with session.get(kube.url + path) as response:
                assert response.status == 200, path
        async with session.get(kube.url + "/apis/nothing.example/v1") as response:
            assert response.status == 404
            assert (await response.json())["reason"] == "NotFound"


async def test_objects_get_real_metadata_and_revisions(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    first = await core.create_namespaced_service("default", service_model("a"))
    second = await core.create_namespaced_service("default", service_model("b"))
    assert first.metadata.uid and first.metadata.uid != second.metadata.uid
    assert first.metadata.creation_timestamp is not None
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    listed = await core.list_namespaced_service("default")
    assert [s.metadata.name for s in listed.items] == ["a", "b"]
    assert listed.metadata.resource_version == second.metadata.resource_version

    with pytest.raises(ApiException) as exists:
        await core.create_namespaced_service("default", service_model("a"))
    assert exists.value.status == 409

    first.spec.ports[0].port = 81
    replaced = await core.replace_namespaced_service("a", "default", first)
    assert replaced.metadata.uid == first.metadata.uid
    assert int(replaced.metadata.resource_version) > int(second.metadata.resource_version)
    with pytest.raises(ApiException) as stale:
        await core.replace_namespaced_service("a", "default", first)  # an old resourceVersion
    assert stale.value.status == 409

    await core.delete_namespaced_service("a", "default")
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_service("a", "default")
    assert missing.value.status == 404


async def test_namespaced_and_cluster_wide_paths(kube: KubeFake, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    await custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", "one", "serviceentries", service_entry("a", "one")
    )
    kube.create(service_entry("b", "two"))
    everywhere = await custom.list_cluster_custom_object(
        "networking.istio.io", "v1", "serviceentries"
    )
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [
        ("one", "a"),
        ("two", "b"),
    ]
    assert everywhere["kind"] == "ServiceEntryList"
    in_two = await custom.list_namespaced_custom_object(
        "networking.istio.io", "v1beta1", "two", "serviceentries"
    )
    assert [i["apiVersion"] for i in in_two["items"]] == ["networking.istio.io/v1beta1"]
    got = await custom.get_namespaced_custom_object(
        "networking.istio.io", "v1", "one", "serviceentries", "a"
    )
    assert got["spec"] == {"hosts": ["a.example"]}

    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "one"}})
    namespaces = await client.CoreV1Api(api).list_namespace()
    assert [n.metadata.name for n in namespaces.items] == ["one"]
    assert namespaces.items[0].metadata.namespace is None


def test_label_selector_grammar() -> None:
    labels = {"app": "reviews", "version": "v2"}
    assert LabelSelector.parse("").matches(labels)
    assert LabelSelector.parse("app=reviews,version==v2").matches(labels)
    assert not LabelSelector.parse("app=reviews,version!=v2").matches(labels)
    assert LabelSelector.parse("missing!=x").matches(labels)
    assert LabelSelector.parse("version in (v1, v2),app").matches(labels)
    assert not LabelSelector.parse("version notin (v1,v2)").matches(labels)
    assert LabelSelector.parse("!missing").matches(labels)
    assert not LabelSelector.parse("!app").matches(labels)
    with pytest.raises(ValueError):
        LabelSelector.parse("app in v1")


async def test_label_selectors_filter_lists(kube: KubeFake, api: client.ApiClient) -> None:
    kube.create(service("a", app="reviews", version="v1"))
    kube.create(service("b", app="reviews", version="v2"))
    kube.create(service("c", app="ratings"))
    core = client.CoreV1Api(api)

    async def names(selector: str) -> list[str]:
        listed = await core.list_service_for_all_namespaces(label_selector=selector)
        return [s.metadata.name for s in listed.items]

    assert await names("app=reviews") == ["a", "b"]
    assert await names("app=reviews,version!=v1") == ["b"]
    assert await names("version in (v1,v3)") == ["a"]
    assert await names("!version") == ["c"]
    with pytest.raises(ApiException) as bad:
        await names("app in reviews")
    assert bad.value.status == 400


async def test_watch_from_a_version_replays_only_later_events(
    kube: KubeFake, api: client.ApiClient
) -> None:
    kube.create(service("before"))
    since = kube.resource_version
    kube.create(service("a"))
    kube.update({**service("a"), "spec": {"ports": [{"port": 81}]}})
    kube.delete("v1", "Service", "a")
    core = client.CoreV1Api(api)
    async with watch.Watch() as stream:
        stream.stream(core.list_namespaced_service, "default", resource_version=since)
        replayed = await take(stream, 3)
        assert summary(replayed) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
        versions = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in replayed]
        assert versions == sorted(versions) and versions[0] > int(since)
        assert replayed[0]["object"].metadata.name == "a"  # deserialized into V1Service
        kube.create(service("live"))
        assert summary(await take(stream, 1)) == [("ADDED", "live")]


async def test_watch_without_a_version_starts_with_the_current_objects(
    kube: KubeFake, api: client.ApiClient
) -> None:
    kube.create(service_entry("a", "one"))
    kube.create(service_entry("b", "two"))
    custom = client.CustomObjectsApi(api)
    async with watch.Watch() as stream:
        stream.stream(
            custom.list_namespaced_custom_object,
            "networking.istio.io",
            "v1",
            "two",
            "serviceentries",
        )
        assert summary(await take(stream, 1)) == [("ADDED", "b")]
        kube.delete("networking.istio.io/v1", "ServiceEntry", "a", "one")  # another namespace
        kube.delete("networking.istio.io/v1", "ServiceEntry", "b", "two")
        assert summary(await take(stream, 1)) == [("DELETED", "b")]


async def test_a_watch_sees_objects_enter_and_leave_its_selector(
    kube: KubeFake, api: client.ApiClient
) -> None:
    kube.create(service("a", app="reviews"))
    since = kube.resource_version
    core = client.CoreV1Api(api)
    async with watch.Watch() as stream:
        stream.stream(
            core.list_namespaced_service,
            "default",
            label_selector="app=reviews",
            resource_version=since,
        )
        kube.update(service("a", app="ratings"))
        kube.create(service("b", app="ratings"))
        kube.update(service("b", app="reviews"))
        events = await take(stream, 2)
    assert summary(events) == [("DELETED", "a"), ("ADDED", "b")]
    assert events[0]["raw_object"]["metadata"]["labels"] == {"app": "reviews"}


async def test_a_compacted_version_answers_410_expired(
    kube: KubeFake, api: client.ApiClient
) -> None:
    since = kube.resource_version
    kube.create(service("a"))
    kube.compact()
    core = client.CoreV1Api(api)
    async with watch.Watch() as stream:
        stream.stream(
            core.list_namespaced_service, "default", resource_version=since, timeout_seconds=5
        )
        with pytest.raises(ApiException) as gone:
            await take(stream, 1)
    assert gone.value.status == 410
    assert "Expired" in str(gone.value.reason)
    # The version the log was compacted at is still good.
    async with watch.Watch() as stream:
        stream.stream(
            core.list_namespaced_service, "default", resource_version=kube.resource_version
        )
        kube.create(service("b"))
        assert summary(await take(stream, 1)) == [("ADDED", "b")]


async def test_the_client_retries_the_first_410_once_without_timeout_seconds(
    kube: KubeFake, api: client.ApiClient
) -> None:
    since = kube.resource_version
    kube.create(service("a"))
    kube.compact()
    watches_before = sum(1 for r in kube.requests if r.query.get("watch"))
    async with watch.Watch() as stream:
        stream.stream(
            client.CoreV1Api(api).list_namespaced_service, "default", resource_version=since
        )
        with pytest.raises(ApiException) as gone:
            await take(stream, 1)
    assert gone.value.status == 410
    assert sum(1 for r in kube.requests if r.query.get("watch")) - watches_before == 2


async def test_bookmarks_carry_the_newest_version(kube: KubeFake, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    async with watch.Watch() as stream:
        stream.stream(
            core.list_namespaced_service,
            "default",
            resource_version=kube.resource_version,
            allow_watch_bookmarks=True,
        )
        assert [e["type"] for e in await take(stream, 1)] == ["BOOKMARK"]
        kube.create(service("elsewhere", "other"))  # not watched, still moves the version
        newest = kube.resource_version
        for _ in range(50):
            (event,) = await take(stream, 1)
            assert event["type"] == "BOOKMARK"
            if event["raw_object"]["metadata"]["resourceVersion"] == newest:
                break
        else:
            raise AssertionError("no bookmark carried the newest version")
        assert stream.resource_version == newest


async def test_timeout_seconds_ends_the_stream(kube: KubeFake, api: client.ApiClient) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with watch.Watch() as stream, asyncio.timeout(5):
        stream.stream(client.CoreV1Api(api).list_namespaced_service, "default", timeout_seconds=1)
        events = [event async for event in stream]
    assert events == []
    assert loop.time() - started >= 0.9
    assert kube.open_watches == 0


async def test_break_watches_ends_open_streams(kube: KubeFake, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    async with watch.Watch() as stream, asyncio.timeout(5):
        stream.stream(core.list_namespaced_service, "default", timeout_seconds=60)
        reader = asyncio.create_task(take(stream, 1))
        await until(lambda: kube.open_watches == 1)
        assert kube.break_watches() == 1
        kube.create(service("after"))  # the broken stream never sees it
        with pytest.raises(StopAsyncIteration):
            await reader


async def test_token_reviews_are_answered_by_the_hook(
    kube: KubeFake, api: client.ApiClient
) -> None:
    seen: list[str] = []

    def review(spec: Any) -> dict[str, Any]:
        seen.append(spec["token"])
        if spec["token"] != "good":
            return {"authenticated": False, "error": "bad token"}
        return {
            "authenticated": True,
            "user": {"username": "system:serviceaccount:default:reviews"},
            "audiences": spec.get("audiences", []),
        }

    kube.token_reviewer = review
    authn = client.AuthenticationV1Api(api)
    for _ in range(2):  # every POST is answered, none is stored
        answer = await authn.create_token_review(
            client.V1TokenReview(
                spec=client.V1TokenReviewSpec(token="good", audiences=["istio-ca"])
            )
        )
        assert answer.status.authenticated
        assert answer.status.user.username == "system:serviceaccount:default:reviews"
        assert answer.status.audiences == ["istio-ca"]
    refused = await authn.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token="bad"))
    )
    assert not refused.status.authenticated and refused.status.error == "bad token"
    assert seen == ["good", "good", "bad"]


async def test_creating_a_crd_serves_its_kind(kube: KubeFake, api: client.ApiClient) -> None:
    crds = [d for d in yaml.safe_load_all(CRDS.read_text()) if d]
    (virtual_service,) = [c for c in crds if c["spec"]["names"]["kind"] == "VirtualService"]
    await client.ApiextensionsV1Api(api).create_custom_resource_definition(virtual_service)
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {"hosts": ["reviews"]},
    }
    await custom.create_namespaced_custom_object(
        "networking.istio.io", "v1alpha3", "default", "virtualservices", body
    )
    listed = await custom.list_cluster_custom_object("networking.istio.io", "v1", "virtualservices")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]


async def test_stop_ends_open_watches_and_leaves_no_task() -> None:
    fake = KubeFake()
    await fake.start()
    api = client.ApiClient(client.Configuration(host=fake.url))
    stream = watch.Watch()
    stream.stream(client.CoreV1Api(api).list_namespaced_service, "default", timeout_seconds=60)
    reader = asyncio.create_task(take(stream, 1))
    async with asyncio.timeout(5):
        await until(lambda: fake.open_watches == 1)
        await fake.stop()
        with pytest.raises(StopAsyncIteration):
            await reader
    await stream.close()
    await api.close()
    current = asyncio.current_task()
    assert not [t for t in asyncio.all_tasks() if t is not current and not t.done()]
