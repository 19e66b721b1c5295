"""Jobs authenticate with the credential their lease carries and with nothing else, and leave
no trace of it: real git against a Basic-auth `git http-backend` and a real sshd on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent.credentials import (
    Access,
    GitCredential,
    parse_access,
    secrets_root,
    sweep_secrets,
)
from agent.errors import JobCancelled, JobFailure
from agent.git import JobControl
from agent.operations import perform
from agent.validation import InvalidJob
from tests.support.credentials import TOKEN, make_ssh_key
from tests.support.jobs import make_job
from tests.support.sshd import other_host_key, start_sshd

NODE_TOKEN = "node-helper-" + "Kx81mQz7Lw2PfR5t"
HELPER_OF_THE_NODE = f"!f() {{ echo username=alice; echo password={NODE_TOKEN}; }}; f"


@pytest.fixture
def agent_config(make_config):
    return make_config(AGENT_GIT_ALLOWED_SCHEMES="http,ssh")


@pytest.fixture
def private_http(http_git, upstream):
    """The upstream served only to alice with TOKEN, on /basic/."""
    http_git.basic_users["alice"] = TOKEN
    upstream.commit({"README.md": "private\n"}, "first")
    return http_git


def job_folders(storage_path: str) -> list[str]:
    """The job folders left in the agent's secrets folder (which goes once it is empty)."""
    root = secrets_root(storage_path)
    return os.listdir(root) if os.path.exists(root) else []


def token_access(server, *, secret: str = TOKEN, name: str = "ci-token") -> Access:
    credential = GitCredential(
        id="6f1c6a8e-5b1e-4a43-9a59-3f0f7d0c2b11",
        name=name,
        kind="https-token",
        host=server.host,
        username="alice",
        secret=secret,
    )
    return Access(credential=credential)


def run(config, access: Access, control: JobControl | None = None, **job):
    try:
        return perform(make_job(config, **job), config, control or JobControl(), access)
    except JobFailure as failure:
        return failure


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and not path.is_symlink()]


def found_in_files(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in files_under(root):
        content = path.read_bytes()
        hits += [f"{path}: {needle[:8]}…" for needle in needles if needle.encode() in content]
    return hits


def _parent(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: the fields after it are plain.
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_texts() -> dict[int, bytes]:
    """The cmdline and environ of every process descending from this one (the agent, git, ssh,
    the helpers, and the servers' git), by pid. Other people's processes on the machine are
    left alone."""
    parents = {int(pid): _parent(pid) for pid in os.listdir("/proc") if pid.isdigit()}
    me = os.getpid()

    def descends(pid: int) -> bool:
        seen = set()
        while pid and pid not in seen:
            if pid == me:
                return True
            seen.add(pid)
            pid = parents.get(pid) or 0
        return False

    texts = {}
    for pid in parents:
        if pid == me or not descends(pid):
            continue
        chunks = []
        for name in ("cmdline", "environ"):
            try:
                chunks.append(Path(f"/proc/{pid}/{name}").read_bytes())
            except OSError:
                continue
        texts[pid] = b"\0".join(chunks)
    return texts


def sample_while(thread: threading.Thread, needles: list[str]) -> tuple[list[str], int]:
    """Looks at every process's cmdline and environ until `thread` ends: the hits of `needles`,
    and how many samples saw a git or ssh process."""
    hits: list[str] = []
    with_git = 0
    while thread.is_alive():
        texts = process_texts()
        if any(b"git" in text.split(b"\0")[0] or b"ssh" in text[:40] for text in texts.values()):
            with_git += 1
        for pid, text in texts.items():
            hits += [f"pid {pid}: {needle[:8]}…" for needle in needles if needle.encode() in text]
        time.sleep(0.05)
    return hits, with_git


def test_the_process_search_finds_a_secret_where_one_is():
    holder = subprocess.Popen(["sleep", "30"], env={"PATH": os.defpath, "X": TOKEN})
    try:
        assert any(TOKEN.encode() in text for text in process_texts().values())
    finally:
        holder.kill()
        holder.wait()


def test_https_clone_and_pull_use_the_credential_and_leave_no_trace(
    agent_config, private_http, upstream, tmp_path
):
    url = private_http.url("basic", upstream.name)
    access = token_access(private_http)

    cloned = run(agent_config, access, git_url=url)
    upstream.commit({"more.txt": "more\n"}, "second")
    pulled = run(agent_config, access, git_url=url, kind="pull")

    assert not isinstance(cloned, JobFailure), cloned
    assert not isinstance(pulled, JobFailure), pulled
    checkout = Path(cloned.local_path)
    assert (checkout / "README.md").read_text() == "private\n"
    assert (checkout / "more.txt").read_text() == "more\n"
    assert pulled.commit == upstream.head()
    assert "alice" in private_http.basic_logins
    storage = Path(agent_config.storage_path)
    assert found_in_files(storage, [TOKEN]) == []
    assert job_folders(str(storage)) == []
    origin = (checkout / ".git" / "config").read_text()
    assert url in origin and "alice" not in origin


def test_the_git_processes_of_a_clone_never_hold_the_secret(agent_config, private_http, upstream):
    private_http.basic_delay[0] = 0.6  # each request waits: time to look at the processes
    url = private_http.url("basic", upstream.name)
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run(agent_config, token_access(private_http), git_url=url))
    )
    worker.start()

    hits, samples_with_git = sample_while(worker, [TOKEN])

    assert not isinstance(outcome[0], JobFailure), outcome
    assert samples_with_git > 0
    assert hits == []


def test_a_refused_token_fails_auth_failed_naming_the_credential_and_host_only(
    agent_config, private_http, upstream
):
    private_http.basic_users["alice"] = "rotated-" + TOKEN[::-1]

    failure = run(
        agent_config, token_access(private_http), git_url=private_http.url("basic", upstream.name)
    )

    assert isinstance(failure, JobFailure)
    assert (failure.code, failure.retryable) == ("auth_failed", False)
    assert "'ci-token'" in failure.message and private_http.host in failure.message
    assert TOKEN not in failure.message
    assert os.listdir(agent_config.projects_path) == []
    assert job_folders(agent_config.storage_path) == []


def test_a_rotated_secret_works_at_once(agent_config, private_http, upstream):
    rotated = "rotated-" + TOKEN[::-1]
    private_http.basic_users["alice"] = rotated

    result = run(
        agent_config, token_access(private_http, secret=rotated),
        git_url=private_http.url("basic", upstream.name),
    )  # fmt: skip

    assert not isinstance(result, JobFailure), result


def test_without_a_credential_the_nodes_own_helper_is_never_used(
    make_config, private_http, upstream
):
    private_http.basic_users["alice"] = NODE_TOKEN
    config = make_config(
        AGENT_GIT_ALLOWED_SCHEMES="http,ssh", AGENT_GIT_CREDENTIAL_HELPER=HELPER_OF_THE_NODE
    )
    url = private_http.url("basic", upstream.name)

    anonymous = run(config, Access(), git_url=url)
    granted = run(config, Access(use_node_credentials=True), git_url=url, target_path="42_granted")

    assert isinstance(anonymous, JobFailure)
    assert anonymous.code == "auth_failed"
    assert "has none" in anonymous.message
    assert not isinstance(granted, JobFailure), granted
    assert Path(granted.local_path, "README.md").exists()


def test_an_anonymous_job_gets_an_empty_private_home(make_config, tmp_path, upstream, http_git):
    # A ~/.netrc that would answer for the server: an anonymous job must not read it.
    http_git.basic_users["alice"] = NODE_TOKEN
    upstream.commit({"a": "a\n"})
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine 127.0.0.1 login alice password {NODE_TOKEN}\n")
    config = make_config(AGENT_GIT_ALLOWED_SCHEMES="http")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        failure = run(config, Access(), git_url=http_git.url("basic", upstream.name))
    finally:
        if old_home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = old_home

    assert isinstance(failure, JobFailure) and failure.code == "auth_failed"
    assert http_git.basic_logins == []


@pytest.fixture
def deploy_key(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    return make_ssh_key(folder)


@pytest.fixture
def sshd(tmp_path, deploy_key):
    server = start_sshd(tmp_path / "sshd", [deploy_key.public])
    yield server
    server.stop()


def key_access(server, key, *, known_hosts: str | None = None) -> Access:
    credential = GitCredential(
        id="0b8e2f8e-1c55-4b52-8d7e-1f8f5c1b9a20",
        name="deploy-key",
        kind="ssh-key",
        host=server.host,
        username="",
        secret=key.private,
        known_hosts=server.known_hosts_line if known_hosts is None else known_hosts,
    )
    return Access(credential=credential)


def test_ssh_clone_and_pull_use_the_deploy_key_and_leave_no_trace(
    agent_config, sshd, deploy_key, upstream
):
    upstream.commit({"README.md": "over ssh\n"})
    url = sshd.url(upstream.bare)

    cloned = run(agent_config, key_access(sshd, deploy_key), git_url=url)
    upstream.commit({"b.txt": "b\n"})
    pulled = run(agent_config, key_access(sshd, deploy_key), git_url=url, kind="pull")

    assert not isinstance(cloned, JobFailure), (cloned, sshd.log())
    assert not isinstance(pulled, JobFailure), pulled
    assert Path(cloned.local_path, "b.txt").read_text() == "b\n"
    storage = Path(agent_config.storage_path)
    assert found_in_files(storage, [deploy_key.body, *deploy_key.body_parts()]) == []
    assert job_folders(str(storage)) == []


def test_the_ssh_processes_of_a_clone_never_hold_the_key(
    agent_config, tmp_path, deploy_key, upstream
):
    slow = start_sshd(tmp_path / "slow-sshd", [deploy_key.public], delay_seconds=1.5)
    try:
        upstream.commit({"a": "a\n"})
        outcome: list[object] = []
        worker = threading.Thread(
            target=lambda: outcome.append(
                run(agent_config, key_access(slow, deploy_key), git_url=slow.url(upstream.bare))
            )
        )
        worker.start()
        hits, samples_with_git = sample_while(worker, deploy_key.body_parts())
    finally:
        slow.stop()

    assert not isinstance(outcome[0], JobFailure), outcome
    assert samples_with_git > 0
    assert hits == []


def test_an_unknown_host_key_fails_host_key_unknown(agent_config, sshd, deploy_key, upstream):
    upstream.commit({"a": "a\n"})

    failure = run(
        agent_config, key_access(sshd, deploy_key, known_hosts=""), git_url=sshd.url(upstream.bare)
    )

    assert isinstance(failure, JobFailure)
    assert (failure.code, failure.retryable) == ("host_key_unknown", False)
    assert "known_hosts" in failure.message and "GIT_SSH_KNOWN_HOSTS" in failure.message


def test_a_wrong_host_key_fails_host_key_mismatch(
    agent_config, sshd, deploy_key, upstream, tmp_path
):
    upstream.commit({"a": "a\n"})
    impostor = f"[127.0.0.1]:{sshd.port} {other_host_key(tmp_path)}"

    failure = run(
        agent_config,
        key_access(sshd, deploy_key, known_hosts=impostor),
        git_url=sshd.url(upstream.bare),
    )

    assert isinstance(failure, JobFailure)
    assert (failure.code, failure.retryable) == ("host_key_mismatch", False)


def test_the_operators_known_hosts_vouch_for_a_host(agent_config, sshd, deploy_key, upstream):
    upstream.commit({"a": "a\n"})
    access = key_access(sshd, deploy_key, known_hosts="")
    access = Access(credential=access.credential, ssh_known_hosts=sshd.known_hosts_line)

    result = run(agent_config, access, git_url=sshd.url(upstream.bare))

    assert not isinstance(result, JobFailure), result


def test_an_anonymous_ssh_job_offers_no_key(agent_config, sshd, upstream):
    upstream.commit({"a": "a\n"})

    failure = run(
        agent_config, Access(ssh_known_hosts=sshd.known_hosts_line),
        git_url=sshd.url(upstream.bare),
    )  # fmt: skip

    assert isinstance(failure, JobFailure)
    assert failure.code == "auth_failed"
    assert "Accepted publickey" not in sshd.log()


def test_a_cancelled_clone_removes_its_secrets(agent_config, private_http, upstream):
    private_http.basic_delay[0] = 3.0
    control = JobControl()
    outcome: list[object] = []

    def clone() -> None:
        try:
            outcome.append(
                perform(
                    make_job(agent_config, git_url=private_http.url("basic", upstream.name)),
                    agent_config,
                    control,
                    token_access(private_http),
                )
            )
        except (JobCancelled, JobFailure) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=clone)
    worker.start()
    secrets_folder = Path(secrets_root(agent_config.storage_path))
    deadline = time.monotonic() + 10
    while not (secrets_folder.exists() and os.listdir(secrets_folder)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    control.cancel("shutdown")
    worker.join(15)

    assert isinstance(outcome[0], JobCancelled)
    assert job_folders(agent_config.storage_path) == []
    assert found_in_files(Path(agent_config.storage_path), [TOKEN]) == []


def test_leftover_job_folders_are_removed_at_start(tmp_path, deploy_key):
    leftover = Path(secrets_root(str(tmp_path))) / "job-dead"
    leftover.mkdir(parents=True)
    (leftover / "key").write_text(deploy_key.private)

    removed = sweep_secrets(str(tmp_path))

    assert removed == ["job-dead"]
    assert job_folders(str(tmp_path)) == []
    os.rmdir(secrets_root(str(tmp_path)))


def test_a_secrets_folder_others_may_enter_is_refused(make_config, private_http, upstream):
    config = make_config(AGENT_GIT_ALLOWED_SCHEMES="http")
    root = Path(secrets_root(config.storage_path))
    root.mkdir(mode=0o777, exist_ok=True)
    root.chmod(0o777)
    try:
        failure = run(
            config, token_access(private_http), git_url=private_http.url("basic", upstream.name)
        )
    finally:
        root.rmdir()

    assert isinstance(failure, JobFailure)
    assert failure.code == "permission_denied"


def test_a_failure_message_never_quotes_the_key(deploy_key):
    access = Access(
        credential=GitCredential(
            id="x", name="k", kind="ssh-key", host="h", username="", secret=deploy_key.private
        )
    )
    message = f"ssh said: {deploy_key.body_parts()[1]} and {deploy_key.private}"

    redacted = access.redact(message)

    assert all(part not in redacted for part in deploy_key.body_parts())


@pytest.mark.parametrize(
    ("credential", "field"),
    [
        ("a string", "credential"),
        ({"kind": "password", "host": "h", "secret": "s"}, "credential.kind"),
        ({"kind": "https-token", "host": "h/x", "secret": "s"}, "credential.host"),
        ({"kind": "https-token", "host": "h", "secret": ""}, "credential.secret"),
        ({"kind": "https-token", "host": "h", "secret": "a\nb"}, "credential.secret"),
    ],
)
def test_a_malformed_credential_fails_the_job_naming_the_field(credential, field):
    with pytest.raises(InvalidJob) as refused:
        parse_access({"credential": credential})

    assert refused.value.field == field
    assert "s" * 3 not in str(refused.value)
