"""Reference benchmark for gradient inversion attacks in federated learning.

The flow is one way: Scenario -> client simulation -> Case (what the attacker sees) + Secret
(ground truth) -> Attack -> Reconstruction -> metrics -> Record -> Leaderboard.
"""

__version__ = "0.1.0"
