"""Evaluation on the untouched test split: the headline metrics with bootstrap intervals,
the register gate's paired comparison, and one model's whole evaluation (which draws on
explain/ for its class activation maps)."""
