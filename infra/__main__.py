"""Pulumi entry point of the TradAI stacks (dev, staging, prod); see docs/deploy.md."""

from infra.program import main

main()
