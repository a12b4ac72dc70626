"""The kind-free pipeline: Plan/PlanItem, make_plan, apply (docs/architecture.md)."""
