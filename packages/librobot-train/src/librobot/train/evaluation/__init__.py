"""Evaluation: offline action error on held-out episodes, closed-loop success in simulated tasks
(vectorised, through the serve runtime), rollout videos and an HTML/PNG report."""
