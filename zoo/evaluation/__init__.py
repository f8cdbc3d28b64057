"""Evaluation: task runners, scoring with honest failure accounting, results.json and report.html."""
