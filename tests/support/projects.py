"""Projects in a given state, reached through the services and the lease protocol as an agent
would: a clone asked for, finished, or failed with an error."""

from __future__ import annotations

import uuid

from nodes.models import Node
from projects import leases, services
from projects.models import Project

MULTILINE_ERROR = "fatal: unable to access 'https://git.example.com/x.git/'\nConnection refused"


def clone(owner, node: Node, name: str = "demo") -> Project:
    return services.request_clone(
        owner=owner,
        name=name,
        git_url=f"https://git.example.com/group/{name}.git",
        branch="main",
        node=node,
    )


def fail_head_job(
    node: Node, project: Project, *, retryable: bool, message: str = MULTILINE_ERROR
) -> Project:
    """Leases the project's next job as the node's agent and reports a failure."""
    grant = leases.lease(node=node, request_id=uuid.uuid4().hex, instance_id=str(uuid.uuid4()))
    assert grant is not None and grant.project.id == str(project.pk)
    leases.complete(
        node=node,
        job_id=grant.job.id,
        lease_token=grant.job.lease_token,
        error={"code": "git_error", "message": message, "retryable": retryable},
    )
    project.refresh_from_db()
    return project
