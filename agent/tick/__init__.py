"""One reconciliation pass: sync, assess, plan, act, log."""
