"""Clone overhead: a clone through Gitfleet (user API -> long-polling agent -> `git clone` on
the node -> reported -> project ready) against a plain `git clone` of the same repository over
the same transport (`git daemon` on 127.0.0.1), for a small and a large repository.

    python -m bench.clone_overhead                         # small + 80 MiB, 5 rounds each
    python -m bench.clone_overhead --large-mib 100 --rounds 9
    python -m bench.clone_overhead --smoke                 # tiny, for CI

Rounds alternate which of the two goes first (ABBA), after one untimed warm-up of each, so
that page cache and CPU contention hit both alike. The Gitfleet time runs from sending
`POST /projects/clone` to the moment the project became ready (the `recorded_at` of its
`JobSucceeded` event; same machine, same clock), so the client's status polling adds nothing.
The plain clone is `git clone --single-branch --branch main`, what the agent transfers too.
Each checkout is removed after its round (Gitfleet's through `DELETE /projects/{id}`).
Traffic goes to 127.0.0.1 only; every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from bench.common import (
    ServerProcess,
    bench_site,
    database_url,
    emit,
    header,
    log,
    ratio,
    stop_on_sigterm,
    summary,
)
from tests.support.gitservers import TEST_GIT_ENV, Upstream, git, start_git_daemon
from tests.support.servers import AgentProcess, UserClient

DEADLINE_SECONDS = 1800
BLOB_MIB = 10  # the large repository's history: incompressible files of this size


def make_repositories(base: Path, large_mib: int) -> dict[str, Upstream]:
    """`small`: a few text files in three commits. `large`: `large_mib` MiB of random bytes,
    one new file per commit, repacked so that every clone is served from one pack."""
    served = base / "served"
    served.mkdir()
    small = Upstream(served, "small")
    small.commit({"README.md": "# small\n", "src/app.py": "print('hello')\n"}, "first")
    small.commit({"src/util.py": "def f():\n    return 1\n"}, "second")
    small.commit({"docs/notes.txt": "notes\n" * 20}, "third")
    large = Upstream(served, "large")
    left, index = large_mib, 0
    while left > 0:
        size = min(BLOB_MIB, left)
        large.commit(
            {f"data/blob-{index:03d}.bin": os.urandom(size * 1024 * 1024)}, f"blob {index}"
        )
        left -= size
        index += 1
    for upstream in (small, large):
        git("repack", "-a", "-d", "-q", cwd=upstream.bare)
        shutil.rmtree(upstream.work)
    return {"small": small, "large": large}


def plain_clone(url: str, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["git", "clone", "--quiet", "--single-branch", "--branch", "main", "--", url, str(dest)],
        env={**TEST_GIT_ENV, "GIT_ALLOW_PROTOCOL": "git"},
        check=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(dest)
    return elapsed


def _recorded_at(events: list[dict], event_type: str) -> datetime:
    found = [e for e in events if e["type"] == event_type]
    if not found:
        raise RuntimeError(f"no {event_type} event in {[e['type'] for e in events]}")
    return datetime.fromisoformat(found[-1]["recorded_at"].replace("Z", "+00:00"))


def gitfleet_clone(user: UserClient, url: str, name: str, deadline: float) -> dict:
    """Seconds from the API call to ready, and the agent's own `git clone` share of it."""
    sent = time.time()
    project = user.clone(name, url, node="bench-node")["project"]
    status = user.status(project["id"])
    while status["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.02)
        status = user.status(project["id"])
    if status["status"] != "ready":
        raise RuntimeError(f"clone of {url} ended {status['status']}: {status['last_error']}")
    events = user.events(project["id"])
    ready = _recorded_at(events, "JobSucceeded").timestamp()
    leased = _recorded_at(events, "JobLeased").timestamp()
    result = next(e for e in events if e["type"] == "JobSucceeded")["data"]["result"]
    return {
        "id": project["id"],
        "seconds": ready - sent,
        "pickup_seconds": leased - sent,
        "agent_job_seconds": result["duration_ms"] / 1000,
    }


def delete_project(user: UserClient, project_id: str, deadline: float) -> None:
    response = user.http.delete(f"/api/v1/projects/{project_id}")
    if response.status_code != 202:
        raise RuntimeError(f"delete answered {response.status_code}: {response.text}")
    while time.monotonic() < deadline:
        if user.status(project_id)["status"] == "deleted":
            return
        time.sleep(0.05)
    raise RuntimeError(f"project {project_id} was not deleted by the deadline")


def wait_online(user: UserClient, node: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        nodes = user.http.get("/api/v1/nodes/").json()
        nodes = nodes.get("results", nodes) if isinstance(nodes, dict) else nodes
        if any(n["name"] == node and n["online"] for n in nodes):
            return
        time.sleep(0.1)
    raise RuntimeError(f"node {node} never came online")


def run(args: argparse.Namespace) -> None:
    url = database_url()
    header("Clone overhead: Gitfleet (API -> agent -> ready) vs plain git clone", url)
    deadline = time.monotonic() + args.deadline
    with tempfile.TemporaryDirectory(prefix="gf-bench-") as tmp:
        base = Path(tmp)
        log(f"building the repositories (large: {args.large_mib} MiB)")
        repos = make_repositories(base, args.large_mib)
        daemon = start_git_daemon(base / "served")
        site = bench_site(base)
        server = agent = None
        try:
            token = site.create_user_token("bench")
            node_token = site.create_node("bench-node")
            server = ServerProcess(site)
            agent = AgentProcess(server.url, node_token, base / "node", AGENT_LEASE_WAIT="25")
            user = UserClient(server.url, token)
            wait_online(user, "bench-node", deadline)
            plain_dir = base / "plain"
            plain_dir.mkdir()
            ratios = {}
            for name, upstream in repos.items():
                repo_url = daemon.url(upstream.name)
                size = sum(f.stat().st_size for f in upstream.bare.rglob("*") if f.is_file())
                timings: dict[str, list[float]] = {"plain": [], "gitfleet": []}
                pickups, agent_jobs = [], []
                for round_index in range(args.rounds + 1):  # round 0 is the warm-up
                    if time.monotonic() > deadline:
                        break
                    order = ["plain", "gitfleet"] if round_index % 2 == 0 else ["gitfleet", "plain"]
                    for which in order:
                        if which == "plain":
                            dest = plain_dir / f"{name}-{round_index}"
                            seconds = plain_clone(repo_url, dest)
                        else:
                            project_name = f"{name}-{round_index}-{uuid.uuid4().hex[:6]}"
                            done = gitfleet_clone(user, repo_url, project_name, deadline)
                            delete_project(user, done["id"], deadline)
                            seconds = done["seconds"]
                            if round_index:
                                pickups.append(done["pickup_seconds"] * 1000)
                                agent_jobs.append(done["agent_job_seconds"] * 1000)
                        if round_index:
                            timings[which].append(seconds * 1000)
                    log(f"{name} round {round_index}: done")
                plain, fleet = summary(timings["plain"]), summary(timings["gitfleet"])
                row = {
                    "repository": name,
                    "served_bytes": size,
                    "rounds": len(timings["gitfleet"]),
                    "plain_git_clone": plain,
                    "gitfleet_clone": fleet,
                    "gitfleet_pickup": summary(pickups),
                    "gitfleet_agent_job": summary(agent_jobs),
                    "ratio_median": ratio(fleet.get("median_ms"), plain.get("median_ms"), 3),
                }
                ratios[name] = row["ratio_median"]
                emit(row)
            emit(
                {
                    "targets": {
                        "large_overhead_at_most_10_percent": ratios.get("large") is not None
                        and ratios["large"] <= 1.10
                    },
                    "full_size": args.large_mib >= 50,
                }
            )
        finally:
            if agent is not None:
                agent.stop()
            if server is not None:
                server.stop()
            site.close()
            daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-mib", type=int, default=80, help="size of the large repository")
    parser.add_argument("--rounds", type=int, default=5, help="timed clones of each kind")
    parser.add_argument("--deadline", type=float, default=DEADLINE_SECONDS, help="seconds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.smoke:
        args.large_mib, args.rounds, args.deadline = 2, 1, 120
    run(args)


if __name__ == "__main__":
    main()
