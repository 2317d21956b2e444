"""TradAI's HTTP API (FastAPI), versioned under /api/v1: see docs/api.md."""
