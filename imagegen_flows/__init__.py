"""The Prefect layers of imagegen-flows, installed under one distinct name.

The folders `flows/`, `tasks/`, `blocks/` and `deployments/` beside `prefect.yaml` are installed as
`imagegen_flows.flows`, `imagegen_flows.tasks`, `imagegen_flows.blocks` and
`imagegen_flows.deployments`, so a user's own top-level `flows` or `tasks` package never shadows
ours (nor ours theirs). The Prefect-free core is the `imagegen` package.
"""
