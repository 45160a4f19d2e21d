"""The gradient-matching engine every optimisation attack composes.

Pieces: `collective` (which part of the dummy batch this process holds and how partial sums combine),
`dummy_gradient` (the client's loss on the dummy batch, differentiated with a graph), `update` (the clients'
FedAvg and aggregated updates unrolled on the dummy batch; pruning's visible entries), `distances`
(gradient distances), `regularizers` (TV, L2 norm, BN statistics, group consistency), `objective` (the
weighted sum), `schedule` (learning-rate schedules) and `loop` (the optimisation loop: Adam or L-BFGS,
signed gradients, box, Langevin noise, best iterate).
"""
