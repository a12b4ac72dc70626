"""Signed plan approvals (docs/approvals.md): who reviewed a saved plan, checked before it is applied."""
