"""The engines a curate run can fan its tasks out to: Prefect task runners for `execution.runner`."""

import os

from prefect.task_runners import ThreadPoolTaskRunner

from schemas.config import ExecutionConfig


def _api_env() -> dict[str, str]:
    """The Prefect API this flow reports to, for the worker processes of a cluster started here: a temporary
    server's address is not in their environment, and without it each worker would start a server of its own."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {"PREFECT_API_URL": str(client.api_url).rstrip("/")}


def task_runner(execution: ExecutionConfig):
    """Prefect's task runner for `execution.runner`: tasks in this process, or fanned out to Dask or Ray."""
    if execution.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if execution.address:
            return DaskTaskRunner(address=execution.address)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
            "n_workers": execution.workers or os.cpu_count(), "threads_per_worker": 1, "processes": True,
            "dashboard_address": ":0", "env": _api_env()})  # any free port: never the one another cluster holds
    if execution.runner == "ray":
        from prefect_ray import RayTaskRunner

        if execution.address:
            return RayTaskRunner(address=execution.address)
        cpus = {"num_cpus": execution.workers} if execution.workers else {}
        return RayTaskRunner(init_kwargs={"runtime_env": {"env_vars": _api_env()}, "include_dashboard": False, **cpus})
    return ThreadPoolTaskRunner(max_workers=1)
