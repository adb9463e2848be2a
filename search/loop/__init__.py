"""The search loop: one run over one or more boards, its objectives, budgets' forecast, the shared
study, and the run directory it writes."""
